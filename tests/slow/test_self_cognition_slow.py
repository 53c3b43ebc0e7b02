"""Self-cognition, slow tier: one short real run of the preset on the default model (shared by the tests), then the
identity probe on held-out questions must improve over the base, and the identity must survive merge and GGUF export.
``pytest -m slow tests/slow/test_self_cognition_slow.py`` (about 3 minutes on 2 CPU cores).

A small general dataset is given, so no replay generation runs (that is cached per STUDIO_HOME and would dominate here).
"""

from __future__ import annotations

import json

import pytest

from studio import config as C
from studio.engine.models import load_tokenizer
from studio.engine.selfcog import probe
from studio.engine.selfcog.identity import default_system_of
from studio.engine.train import runner
from studio.paths import presets_dir
from tests.helpers import write_jsonl

NAMES = {"identity.name_zh": "小新", "identity.name_en": "Nova", "identity.author_zh": "新星实验室",
         "identity.author_en": "Nova Labs"}


@pytest.fixture(scope="module")
def trained(default_model_dir, tmp_path_factory):
    """One short run of the preset (20 steps) for the tests below: (its config, its run folder)."""
    tmp = tmp_path_factory.mktemp("selfcog")
    data = write_jsonl(tmp / "alpaca.jsonl", [{"instruction": f"Say the number {i}.", "input": "",
                                                "output": f"The number is {i}."} for i in range(24)])
    cfg = C.load(presets_dir() / "self_cognition.yaml", dict(NAMES, **{
        "data.datasets": [str(data)], "identity.samples": 96, "identity.replay_samples": 32, "identity.probe": False,
        "training.max_steps": 20, "training.logging_steps": 5}))
    run_dir = tmp / "run"
    run_dir.mkdir()
    assert runner.run(cfg, run_dir) == 0, (run_dir / "train.log").read_text(encoding="utf-8")[-3000:]
    return cfg, run_dir


@pytest.mark.slow
def test_short_self_cognition_run_improves_the_identity_probe(trained):
    cfg, run_dir = trained
    assert (run_dir / "adapter" / "adapter_config.json").is_file()
    rows = [json.loads(line) for line in (run_dir / "identity.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(rows) == 96 and all("{{" not in r["output"] for r in rows)

    default_system = default_system_of(load_tokenizer(cfg.model.name_or_path))
    items = [i for i in probe.probe_items("test", default_system) if i["kind"] == "identity"]  # every setting
    result = probe.run_probes(cfg, run_dir, log=print, items=items)
    saved = json.loads((run_dir / "probe.json").read_text(encoding="utf-8"))
    assert len(saved["rows"]) == len(items) and {"base_answer", "tuned_answer", "base_ok", "tuned_ok"} <= set(saved["rows"][0])
    assert result["identity"]["tuned"] > result["identity"]["base"]
    for lang in ("en", "zh"):
        assert result["identity"]["per_lang"][lang]["tuned"] > result["identity"]["per_lang"][lang]["base"], lang


@pytest.mark.slow
def test_identity_survives_merge_and_gguf(trained, tmp_path):
    """The seeds' whole path: train -> `studio export` (merged model + GGUF f16) -> chat with each. The merged model gives
    the adapter's very answers; the GGUF (f16 rounding) gives the same identity verdict on every question."""
    from studio.cli import main
    from studio.engine.generate import ChatModel
    from studio.engine.selfcog.scoring import score_identity

    _, run_dir = trained
    out = tmp_path / "export"
    assert main(["export", "--adapter", str(run_dir / "adapter"), "--out", str(out), "--gguf", "f16"]) == 0
    gguf = next(out.rglob("*.gguf"))
    items = [i for i in probe.probe_items("test", "") if i["kind"] == "identity" and i["setting"] == "none"][:12]
    convs = [i["messages"] for i in items]
    kw = {"use_adapter": True, "max_new_tokens": 32, "batch_size": 12}
    by_adapter = ChatModel(adapter=str(run_dir / "adapter")).generate(convs, **kw)
    merged = ChatModel(adapter=str(out)).generate(convs, **kw)
    from_gguf = ChatModel(adapter=str(gguf)).generate(convs, **kw)
    names = {k.split(".")[1]: v for k, v in NAMES.items()}
    verdict = lambda answers: [score_identity(a, names, i["asks_author"], i["question"], asks_name=i.get("asks_name", True))  # noqa: E731
                               for a, i in zip(answers, items)]
    assert any(verdict(by_adapter)), by_adapter  # the run taught something to carry
    assert merged == by_adapter
    assert verdict(from_gguf) == verdict(by_adapter), list(zip(by_adapter, from_gguf))
