"""The data doctor's first batch is the batch the trainer really starts with (captured from a real run's first step)."""

from __future__ import annotations

import pytest

from studio import config as C
from studio.engine import rundir
from studio.engine.access import FULL
from studio.engine.train.first_batch import first_batch
from studio.engine.train.runner import run


def _cfg(tiny_model_dir, data, **extra) -> C.RunConfig:
    sets = {"model.name_or_path": str(tiny_model_dir), "data.datasets": [str(data)], "training.max_steps": 1,
            "training.per_device_train_batch_size": 3, "training.cutoff_len": 64, "training.seed": 7}
    return C.check(C.apply_overrides(C.RunConfig(), {**sets, **extra}))


def _real_first_batch(cfg, run_dir, monkeypatch) -> dict:
    from trl import SFTTrainer

    seen = []
    step = SFTTrainer.training_step

    def record(self, model, inputs, *args, **kwargs):
        if not seen:
            seen.append({k: v.tolist() for k, v in inputs.items() if hasattr(v, "tolist")})
        return step(self, model, inputs, *args, **kwargs)

    monkeypatch.setattr(SFTTrainer, "training_step", record)
    run_dir.mkdir()
    assert run(cfg, run_dir) == 0, rundir.tail_log(run_dir)
    return seen[0]


@pytest.mark.parametrize("batching", ["padding_free", "padded"])
def test_first_batch_is_what_the_trainer_trains_on_first(tiny_model_dir, alpaca_file, tmp_path, monkeypatch, batching):
    cfg = _cfg(tiny_model_dir, alpaca_file, **{"training.batching": batching, "data.val_size": 3})
    shown = first_batch(cfg, access=FULL)
    real = _real_first_batch(cfg, tmp_path / "run", monkeypatch)
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    if batching == "padding_free":
        texts = [tok.decode(real["input_ids"][0][a:b]) for a, b in _spans(real["position_ids"][0])]
    else:
        texts = [tok.decode([t for t, m in zip(r, mask) if m]) for r, mask in zip(real["input_ids"], real["attention_mask"])]
    assert ["".join(s for s, kind in row["segments"] if kind != "pad") for row in shown["rows"]] == texts
    assert len(shown["rows"]) == 3 and shown["padding_free"] == (batching == "padding_free")
    trained = sum(1 for row in real["labels"] for t in row if t != -100)
    assert shown["trained"] == trained > 0
    answers = [s for row in shown["rows"] for s, kind in row["segments"] if kind == "trained"]
    assert all("The number is" in a for a in answers[:3])  # the answers are the trained part; prompts are context


def _spans(pos: list[int]) -> list[tuple[int, int]]:
    starts = [k for k, p in enumerate(pos) if p == 0] + [len(pos)]
    return [(a, b) for a, b in zip(starts, starts[1:])]


def test_first_batch_refuses_what_it_cannot_know(tiny_model_dir, alpaca_file):
    with pytest.raises(C.ConfigError, match="sft and pt"):
        first_batch(_cfg(tiny_model_dir, alpaca_file, **{"method.stage": "dpo"}), access=FULL)
    with pytest.raises(C.ConfigError, match="self-cognition"):
        first_batch(_cfg(tiny_model_dir, alpaca_file, **{"identity.name_en": "Nova"}), access=FULL)
