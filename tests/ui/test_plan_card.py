"""The Train tab's fit-and-time card: it runs the same ``--plan`` a user types (child process) and shows its JSON; a
form naming a path outside the page's folders is refused before any child starts."""

from __future__ import annotations

import pytest

from studio import config as C
from studio.ui.panels import plan_card
from studio.ui.tabs import train as train_tab
from tests.helpers import web_context


@pytest.fixture
def ctx(tmp_path):
    c = web_context(tmp_path / "runs")
    yield c
    c.close()


def _values(cfg: C.RunConfig) -> list:
    return train_tab.config_to_values(cfg, C.field_specs())


def _to_config(values):
    return train_tab.values_to_config(C.field_specs(), values)


def test_card_estimates_the_form_as_it_is(ctx, tiny_model_dir, alpaca_file):
    cfg = C.apply_overrides(C.RunConfig(), {"model.name_or_path": str(tiny_model_dir), "data.datasets": [str(alpaca_file)],
                                            "training.max_steps": 4, "training.per_device_train_batch_size": 4,
                                            "training.cutoff_len": 96})
    shown = list(plan_card.on_estimate(ctx, "en", _values(cfg), _to_config))
    assert "Estimating" in shown[0][0]
    summary, breakdown, changes = shown[-1]
    assert "**Fits**" in summary and "for 4 steps" in summary and "trainable of" in summary, summary
    assert list(breakdown.iloc[:, 0])[:2] == ["runtime", "weights"] and len(changes) >= 2
    zh = plan_card.render({"fits": False, "peak_memory_bytes": 9e9, "eta_seconds": None, "steps": 3,
                           "memory": {"available": {"limit_bytes": 4e9, "where": "RAM"}, "parts": {"weights": 1}},
                           "micro_run": None, "parameters": {"trainable": 1, "total": 2}, "data": {}, "changes": []}, "zh")
    assert "放不下" in zh[0] and "未测量" in zh[0]


def test_card_refuses_outside_paths_and_invalid_forms(ctx, tiny_model_dir):
    bad = C.apply_overrides(C.RunConfig(), {"model.name_or_path": str(tiny_model_dir), "data.datasets": ["/etc/passwd"]})
    shown = list(plan_card.on_estimate(ctx, "en", _values(bad), _to_config))
    assert "outside the folders" in shown[-1][0] and shown[-1][1] is None
    invalid = _values(C.RunConfig())
    invalid[[s.key for s in C.field_specs()].index("training.learning_rate")] = -1
    shown = list(plan_card.on_estimate(ctx, "en", invalid, _to_config))
    assert len(shown) == 1 and "training.learning_rate" in shown[0][0]
