"""Exports proven (issue 17, item 3): every export carries ``provenance.json`` (base fingerprint, data hashes, config, final
metrics, probe, logits check, studio version), and a GGUF export loads and generates in a real llama.cpp runtime whose
logits are compared with the merged model's (skipped with the reason when llama-cpp-python is not installed)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import pytest

from studio.engine.export import llama_cpp
from studio.engine.export.merge import merge_adapter
from tests.engine.test_export import make_adapter, make_run, small_vocab_model_dir  # noqa: F401  (a fixture)


def sha(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def test_export_writes_provenance_with_hashes_config_metrics_probe_and_check(tiny_model_dir, tmp_path, monkeypatch):
    from studio import config as C
    from studio.engine import rundir

    monkeypatch.chdir(tmp_path)  # the run's data spec "data.jsonl" is relative, as a preset's would be
    data = tmp_path / "data.jsonl"
    data.write_text('{"instruction": "Hi", "input": "", "output": "Hello"}\n', encoding="utf-8")
    run = make_run(tmp_path, tiny_model_dir, seed=7, probe={"identity": {"base": 0.0, "tuned": 1.0, "n": 12}})
    rundir.write_status(run, state="finished", step=5, max_steps=5, final_loss=1.25)
    (run / "metrics.jsonl").write_text(json.dumps({"step": 5, "loss": 1.25, "lr": 1e-4}) + "\n")
    res = merge_adapter(run, tmp_path / "out")
    prov = json.loads((tmp_path / "out" / "provenance.json").read_text())
    base = prov["base_model"]
    assert base["name"] == str(tiny_model_dir) and base["path"] == str(tiny_model_dir)
    weights = {Path(f["path"]).name: f["sha256"] for f in base["files"]}
    assert weights["model.safetensors"] == sha(tiny_model_dir / "model.safetensors") and "config.json" in weights
    cfg = C.load(run / "config.yaml")
    assert prov["data_files"] == [{"path": str(data.resolve()), "bytes": data.stat().st_size, "sha256": sha(data),
                                   "spec": cfg.data.datasets[0]}]
    assert prov["config"] == json.loads(json.dumps(dataclasses.asdict(cfg)))
    assert prov["final_metrics"]["status"]["final_loss"] == 1.25 and prov["final_metrics"]["last_logged"]["loss"] == 1.25
    assert prov["probe"]["identity"]["tuned"] == 1.0
    check = prov["logits_check"]["export"]
    assert check["ok"] and check["max_abs_diff"] == res["max_abs_diff"] and len(check["verification"]["per_prompt"]) == 4
    assert prov["studio"]["package"] and prov["studio"]["libraries"]["torch"]
    assert "provenance.json" in (tmp_path / "out" / "README.md").read_text()
    # a changed data file no longer matches the record
    data.write_text('{"instruction": "Hi", "input": "", "output": "Bye"}\n', encoding="utf-8")
    assert sha(data) != prov["data_files"][0]["sha256"]


@pytest.mark.skipif(not llama_cpp.available(), reason=llama_cpp.INSTALL_HINT)
def test_gguf_export_loads_and_generates_in_llama_cpp_like_the_merged_model(small_vocab_model_dir, tmp_path):  # noqa: F811
    adapter = make_adapter(small_vocab_model_dir, tmp_path / "adapter", seed=11)
    res = merge_adapter(adapter, tmp_path / "out", gguf=("f16", "q8_0"))
    f16, q8 = (g["llama_cpp"] for g in res["gguf"])
    for lc in (f16, q8):
        assert lc.get("per_prompt"), lc
        assert lc["tokenizer_match"] and len(lc["per_prompt"]) == 4
        assert lc["generated"]["token_ids"]  # it answers
        # the first generated token is the first-answer-token argmax that was compared
        assert lc["generated"]["token_ids"][0] == lc["per_prompt"][0]["first_token"]
    assert f16["first_token_agreement"] == 1.0 and f16["top1_agreement"] >= 0.97
    assert f16["max_abs_diff"] <= 0.05 * max(1.0, res["verification"]["logit_scale"])
    assert q8["top1_agreement"] >= 0.9 and q8["max_abs_diff"] > f16["max_abs_diff"]
    prov = json.loads((tmp_path / "out" / "provenance.json").read_text())
    assert prov["logits_check"]["gguf"][1]["llama_cpp"]["top1_agreement"] == q8["top1_agreement"]
    again = llama_cpp.check_export(res["gguf"][0]["path"], tmp_path / "out")  # the same, from a finished export
    assert again["max_abs_diff"] == pytest.approx(f16["max_abs_diff"], abs=1e-5)
