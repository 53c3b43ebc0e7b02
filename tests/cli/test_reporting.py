"""Charts you can read, at the source: a run with an eval split measures the base model at step 0, every metrics line
carries the process memory, and ``training.report_to`` sends the trainer's logs to TensorBoard and trackio, read back
here with each library's own reader (each test is skipped, saying why, when its library is not installed:
``pip install 'tuning-studio[tensorboard]'`` / ``[trackio]``)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from studio.engine import rundir

ROOT = Path(__file__).resolve().parents[2]


def train(tmp_path: Path, tiny_model_dir, data, report_to: str = "none") -> Path:
    run_dir = tmp_path / "run"
    sets = [f"model.name_or_path={tiny_model_dir}", f"data.datasets=[{data}]", "training.max_steps=3",
            "training.per_device_train_batch_size=4", "training.cutoff_len=96", "training.logging_steps=1",
            "data.val_size=4", "training.eval_steps=2", f"training.report_to={report_to}"]
    env = {k: v for k, v in os.environ.items() if k not in ("TRACKIO_DIR", "TENSORBOARD_LOGGING_DIR")}
    res = subprocess.run([sys.executable, "-m", "studio", "train", *[a for s in sets for a in ("--set", s)],
                          f"--output-dir={run_dir}"], capture_output=True, text=True, cwd=ROOT, timeout=600, env=env)
    assert res.returncode == 0, res.stderr[-3000:]
    return run_dir


def test_eval_loss_starts_at_step_0_and_memory_is_logged(tiny_model_dir, alpaca_file, tmp_path):
    run_dir = train(tmp_path, tiny_model_dir, alpaca_file)
    lines = rundir.read_metrics(run_dir)
    evals = [m for m in lines if m.get("kind") == "eval"]
    assert evals[0]["step"] == 0 and evals[0]["eval_loss"] > 0  # the base model, before the first step
    assert [m["step"] for m in evals] == [0, 2, 3]  # then every eval_steps=2, and at the end
    trains = [m for m in lines if m.get("kind") == "train"]
    assert trains and all(m["rss_bytes"] > 50_000_000 for m in trains)


@pytest.mark.skipif(importlib.util.find_spec("tensorboard") is None,
                    reason="tensorboard is not installed (pip install 'tuning-studio[tensorboard]')")
def test_report_to_tensorboard_read_back_with_its_event_reader(tiny_model_dir, alpaca_file, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run_dir = train(tmp_path, tiny_model_dir, alpaca_file, "tensorboard")
    files = list((run_dir / rundir.TENSORBOARD).rglob("events.out.tfevents.*"))
    assert files, list(run_dir.iterdir())
    acc = EventAccumulator(str(files[0].parent))
    acc.Reload()
    tags = acc.Tags()["scalars"]
    assert "train/loss" in tags and "eval/loss" in tags, tags
    ours = [m["loss"] for m in rundir.read_metrics(run_dir) if m.get("kind") == "train"]
    theirs = [e.value for e in acc.Scalars("train/loss")]
    assert theirs == pytest.approx(ours, rel=1e-5)  # the same losses as metrics.jsonl
    assert min(e.step for e in acc.Scalars("eval/loss")) == 0


@pytest.mark.skipif(importlib.util.find_spec("trackio") is None,
                    reason="trackio is not installed (pip install 'tuning-studio[trackio]')")
def test_report_to_trackio_read_back_with_its_storage_reader(tiny_model_dir, alpaca_file, tmp_path):
    run_dir = train(tmp_path, tiny_model_dir, alpaca_file, "trackio")
    assert (run_dir / rundir.TRACKIO).is_dir()
    # trackio fixes its folder when imported: read it in a process whose TRACKIO_DIR is the run's
    code = ("import json, sys; from trackio.sqlite_storage import SQLiteStorage as S; "
            "print(json.dumps(S.get_logs('tuning-studio', sys.argv[1])))")
    res = subprocess.run([sys.executable, "-c", code, run_dir.name], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "TRACKIO_DIR": str(run_dir / rundir.TRACKIO)})
    assert res.returncode == 0, res.stderr[-2000:]
    logs = json.loads(res.stdout.strip().splitlines()[-1])
    losses = [r["train/loss"] for r in logs if "train/loss" in r]
    ours = [m["loss"] for m in rundir.read_metrics(run_dir) if m.get("kind") == "train"]
    assert losses == pytest.approx(ours, rel=1e-5)
    assert any("eval/loss" in r for r in logs)
