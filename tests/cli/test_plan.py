"""``studio train CONFIG --plan``: the fit-and-time estimate, checked against what training really does (tiny model)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from studio import config as C
from studio.engine import memory, rundir
from studio.engine.train import plan as plan_mod

ROOT = Path(__file__).resolve().parents[2]
REQUIRED = {"peak_memory_bytes", "eta_seconds", "train_tokens", "steps", "fits"}


def _sets(tiny_model_dir, data, **extra) -> dict:
    return {"model.name_or_path": str(tiny_model_dir), "data.datasets": [str(data)], "training.max_steps": 5,
            "training.per_device_train_batch_size": 4, "training.cutoff_len": 96, **extra}


def test_plan_prints_json_last_and_matches_the_real_run(tiny_model_dir, alpaca_file, tmp_path):
    sets = _sets(tiny_model_dir, alpaca_file)
    argv = [a for k, v in sets.items() for a in ("--set", f"{k}={v if not isinstance(v, list) else '[' + v[0] + ']'}")]
    res = subprocess.run([sys.executable, "-m", "studio", "train", *argv, "--plan"], capture_output=True, text=True,
                         cwd=ROOT, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    plan = json.loads(res.stdout.strip().splitlines()[-1])
    assert REQUIRED <= set(plan) and plan["fits"] is True and plan["micro_run"]["ok"], plan.get("micro_run")
    assert plan["eta_seconds"] > 0 and plan["micro_run"]["step_seconds"] > 0 and plan["peak_source"] == "micro-run"
    assert plan["peak_memory_bytes"] >= plan["micro_run"]["rss_at_start"] > 0
    # the same run, for real: steps, tokens and trainable parameters as the plan said
    run_dir = tmp_path / "run"
    res = subprocess.run([sys.executable, "-m", "studio", "train", *argv, f"--output-dir={run_dir}"], capture_output=True,
                         text=True, cwd=ROOT, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    status = rundir.read_status(run_dir)
    report = json.loads((run_dir / rundir.DATA_REPORT).read_text())
    assert plan["steps"] == status["step"] == 5 and plan["train_tokens"] == report["train_tokens"]
    assert plan["data"]["truncated_rows"] == report["truncated_rows"]
    log = (run_dir / rundir.LOG).read_text()
    assert f"{plan['parameters']['trainable']:,} trainable of {plan['parameters']['total']:,}" in log


@pytest.mark.parametrize("kind", ["lora", "freeze", "full"])
def test_parameter_counts_are_those_training_builds(tiny_model_dir, alpaca_file, kind):
    from studio.engine.train import common

    cfg = C.apply_overrides(C.RunConfig(), _sets(tiny_model_dir, alpaca_file, **{"method.finetuning_type": kind,
                                                                                 "freeze.trainable_layers": 1}))
    shape = plan_mod.model_shape(cfg)
    model = common.build_model(cfg, log=lambda m: None)
    assert shape["trainable"] == sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert shape["total"] == sum(p.numel() for p in model.parameters())


def test_a_run_that_will_not_fit_says_what_to_change(tiny_model_dir, alpaca_file, monkeypatch):
    cfg = C.apply_overrides(C.RunConfig(), _sets(tiny_model_dir, alpaca_file, **{"training.max_steps": -1,
                                                                                 "training.num_train_epochs": 2}))
    monkeypatch.setattr(memory, "rss_bytes", lambda: 400_000_000)  # the runtime part: the same in both plans
    full = plan_mod.make_plan(cfg, micro=False, log=lambda m: None)
    assert full["peak_source"] == "estimate" and full["micro_run"] is None and full["eta_seconds"] is None
    assert full["steps"] == 2 * 6  # 24 rows, batch 4, two epochs
    parts = full["memory"]["parts"]
    assert set(parts) >= {"runtime", "weights", "adapters", "gradients", "optimizer", "activations"}
    assert parts["optimizer"] == 2 * parts["gradients"] == 2 * full["parameters"]["trainable"] * 4
    saved = {c["change"]: c["saves_bytes"] for c in full["changes"]}["training.per_device_train_batch_size=2"]
    limit = int(full["peak_memory_bytes"] - saved / 2)  # a machine a little too small: half the batch would fit
    monkeypatch.setattr(memory, "ram", lambda: {"total_bytes": limit, "available_bytes": limit})
    tight = plan_mod.make_plan(cfg, micro=True, log=lambda m: None)
    assert tight["fits"] is False and tight["micro_run"] is None  # no micro-run for a run that would not fit
    changes = {c["change"]: c for c in tight["changes"]}
    assert "training.per_device_train_batch_size=2" in changes and "training.gradient_checkpointing=on" in changes
    half = changes["training.per_device_train_batch_size=2"]
    assert half["saves_bytes"] > 0 and half["set"]["training.gradient_accumulation_steps"] == 2
    assert half["fits"] is True and half["peak_memory_bytes"] <= limit


def test_plan_of_a_pt_run_counts_packed_tokens(tiny_model_dir, tmp_path):
    docs = tmp_path / "docs.txt"
    docs.write_text("".join(f"Document {i} talks about rivers and hills for a while.\n" for i in range(30)))
    cfg = C.apply_overrides(C.RunConfig(), _sets(tiny_model_dir, docs, **{"method.stage": "pt",
                                                                          "training.cutoff_len": 32}))
    out = plan_mod.make_plan(cfg, micro=False, log=lambda m: None)
    assert out["data"]["rows"] == -(-out["train_tokens"] // 32) and out["data"]["truncated_rows"] == 0
    assert out["data"]["batch_tokens"] <= 4 * 32
    assert os.environ.get("STUDIO_HOME")  # the conftest home: nothing written elsewhere


def test_with_a_gpu_its_free_memory_decides(tiny_model_dir, alpaca_file, monkeypatch):
    """No GPU here: the plan is asked about one (its free memory) to check the GPU estimate and that it decides."""
    cfg = C.apply_overrides(C.RunConfig(), _sets(tiny_model_dir, alpaca_file))
    big = 100 * 2**30
    avail = {"ram_total_bytes": big, "ram_available_bytes": big, "limit_bytes": big, "where": "RAM",
             "gpu_name": "Test GPU", "gpu_total_bytes": 2**30, "gpu_free_bytes": 2**30}
    monkeypatch.setattr(plan_mod, "available_memory", lambda: dict(avail))
    roomy = plan_mod.make_plan(cfg, micro=False, log=lambda m: None)
    parts = roomy["memory"]["parts"]
    assert roomy["gpu_peak_bytes"] == sum(parts.values()) - parts["runtime"] and roomy["fits"] is True
    assert roomy["peak_memory_bytes"] == parts["runtime"] + parts["weights"]  # RAM holds the runtime and the load
    avail["gpu_free_bytes"] = roomy["gpu_peak_bytes"] // 2
    tight = plan_mod.make_plan(cfg, micro=False, log=lambda m: None)
    assert tight["fits"] is False and all(c["peak_memory_bytes"] < tight["gpu_peak_bytes"] for c in tight["changes"]
                                          if c["saves_bytes"] > 0)


def test_memory_held_after_training_is_a_floor_not_a_rate(tiny_model_dir, alpaca_file):
    """The self-cognition probe runs after training and holds memory whatever the batch: the micro-run's training peak
    is scaled to the run's largest batch, its whole peak only bounds the estimate from below (it was scaled as if it were
    training memory, which put the self-cognition preset's estimate at 2.4x its measured peak)."""
    cfg = C.apply_overrides(C.RunConfig(), _sets(tiny_model_dir, alpaca_file))
    est = plan_mod.Estimate(cfg, plan_mod.model_shape(cfg), tokens=1000, static=0)
    est.calibrate(start=1_000, peak=3_000, tokens=100)  # training: 20 bytes a token
    assert est.peak == 1_000 + 20 * 1000
    est.floor = 50_000  # the probe's peak, measured over the whole micro-run
    assert est.peak == 50_000
    est.floor = 5_000
    assert est.peak == 21_000
