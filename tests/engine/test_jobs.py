"""The job queue (studio.engine.jobs.training) and the curves reader (studio.engine.curves), without torch.

A fake trainer stands in for ``python -m studio.train``: the manager starts it through a tiny wrapper that takes the place
of the Python interpreter, so the real launch path (argv, new session, stdout capture, status files) is exercised in
about a second per run. Run: ``pytest tests/test_jobs.py``.
"""

from __future__ import annotations

import json
import math
import os
import signal
import stat
import sys
import textwrap
from pathlib import Path

import pytest

from studio import config as C
from studio.engine.access import FULL
from studio.engine.jobs import training as jobs
from studio.engine import curves as metrics, rundir
from tests.helpers import wait_until

FAKE_TRAINER = textwrap.dedent('''
    """Behaves like `python -m studio.train CONFIG --output-dir=RUN` for the job tests; run_name picks a behaviour."""
    import json, os, sys, time
    import yaml
    run = next(a.split("=", 1)[1] for a in sys.argv if a.startswith("--output-dir="))
    cfg = yaml.safe_load(open(os.path.join(run, "config.yaml")))
    name, steps = cfg["output"]["run_name"], max(cfg["training"]["max_steps"], 1)
    if name.startswith("crash"):
        print("Traceback: something broke before training", flush=True)
        sys.exit(3)

    def status(**kw):
        path = os.path.join(run, "status.json")
        st = json.load(open(path)) if os.path.exists(path) else {}
        st.update(kw, updated_at=time.time())
        json.dump(st, open(path + ".tmp", "w")); os.replace(path + ".tmp", path)

    status(state="running", pid=os.getpid(), started_at=time.time(), max_steps=steps)
    with open(os.path.join(run, "train.log"), "a") as log:
        for step in range(1, steps + 1):
            if os.path.exists(os.path.join(run, "STOP")):
                status(state="aborted", exit_code=0, ended_at=time.time()); sys.exit(0)
            time.sleep(0.15 if not name.startswith("slow") else 0.5)
            with open(os.path.join(run, "metrics.jsonl"), "a") as m:
                m.write(json.dumps({"step": step, "loss": 3.0 / step, "learning_rate": 1e-3}) + "\\n")
            log.write(f"step {step}/{steps}\\n"); log.flush()
            status(step=step)
    status(state="finished", exit_code=0, ended_at=time.time(), final_loss=3.0 / steps)
''')


@pytest.fixture
def fake_python(tmp_path) -> str:
    """An executable that ignores `-m studio.train` and runs the fake trainer with the same arguments."""
    script = tmp_path / "fake_trainer.py"
    script.write_text(FAKE_TRAINER)
    wrapper = tmp_path / "python"
    wrapper.write_text(f'#!/bin/sh\nshift 2\nexec "{sys.executable}" "{script}" "$@"\n')
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IEXEC)
    return str(wrapper)


@pytest.fixture
def manager(tmp_path, fake_python):
    jm = jobs.JobManager(tmp_path / "runs", python=fake_python)
    jm.start(interval=0.1)
    yield jm
    jm.close()


def _cfg(name: str, steps: int = 3) -> C.RunConfig:
    return C.apply_overrides(C.RunConfig(), {"data.datasets": ["x.jsonl"], "training.max_steps": steps, "output.run_name": name})


def _state(run: Path) -> str:
    return rundir.read_status(run).get("state")


def test_run_folder_and_command(manager):
    job = manager.submit(_cfg("one"), access=FULL)
    assert (job.run_dir / rundir.CONFIG).is_file()
    assert C.load(job.run_dir / rundir.CONFIG).output.run_name == "one"
    assert job.argv[1:] == ["-m", "studio.train", str(job.run_dir / "config.yaml"), f"--output-dir={job.run_dir}"]
    assert (job.run_dir / rundir.COMMAND).read_text().strip().endswith(f"--output-dir={job.run_dir}")
    wait_until(lambda: _state(job.run_dir) == "finished", 30, "run job finished", interval=0.05)
    wait_until(lambda: manager.active() is None, 30, "the queue to have no active run", interval=0.05)
    assert rundir.read_status(job.run_dir)["exit_code"] == 0
    assert manager.last_run() == job.run_dir


def test_invalid_config_starts_nothing(manager):
    with pytest.raises(C.ConfigError, match="training.learning_rate"):
        manager.submit(C.apply_overrides(_cfg("bad"), {"training.learning_rate": -1}), access=FULL)
    assert not (manager.runs_root.exists() and any(manager.runs_root.iterdir()))


def test_queue_runs_one_at_a_time_in_order_and_cancel(manager):
    a = manager.submit(_cfg("a", 4), access=FULL)
    b = manager.submit(_cfg("b", 1), access=FULL)
    c = manager.submit(_cfg("c", 1), access=FULL)
    assert manager.active().run_id == a.run_id
    assert [j.run_id for j in manager.queued()] == [b.run_id, c.run_id]
    assert _state(b.run_dir) == "queued"
    assert manager.cancel(c.run_id)
    assert not manager.cancel(c.run_id)
    wait_until(lambda: _state(b.run_dir) == "finished", 30, "run b finished", interval=0.05)
    st_a, st_b = rundir.read_status(a.run_dir), rundir.read_status(b.run_dir)
    assert st_a["ended_at"] <= st_b["started_at"]  # b started only after a ended
    assert _state(c.run_dir) == "aborted" and not (c.run_dir / jobs.LAUNCHED).exists()


def test_stop_active_run(manager):
    job = manager.submit(_cfg("slow-stop", 100), access=FULL)
    wait_until(lambda: rundir.read_status(job.run_dir).get("step", 0) >= 1, 30, "the first step", interval=0.05)
    assert manager.stop(job.run_id)
    assert (job.run_dir / rundir.STOP).exists()
    wait_until(lambda: manager.active() is None, 30, "the queue to have no active run", interval=0.05)
    assert _state(job.run_dir) == "aborted"
    assert rundir.read_status(job.run_dir)["step"] < 100


def test_crash_is_reported_with_exit_code_and_log(manager):
    job = manager.submit(_cfg("crash"), access=FULL)
    wait_until(lambda: _state(job.run_dir) == "failed", 30, "run job failed", interval=0.05)
    st = rundir.read_status(job.run_dir)
    assert st["exit_code"] == 3
    assert "exited with code 3" in st["error"]
    assert "something broke" in jobs.log_tail(job.run_dir)


def test_recover_adopts_running_child_and_queued_runs(tmp_path, fake_python):
    first = jobs.JobManager(tmp_path / "runs", python=fake_python)
    running = first.submit(_cfg("slow-adopt", 100), access=FULL)
    waiting = first.submit(_cfg("waiting", 1), access=FULL)
    wait_until(lambda: _state(running.run_dir) == "running", 30, "run running running", interval=0.05)
    # a new studio process (the first one "crashed": no close, no thread) finds both on disk
    second = jobs.JobManager(tmp_path / "runs", python=fake_python)
    second.recover()
    assert second.active() is not None and second.active().run_id == running.run_id
    assert [j.run_id for j in second.queued()] == [waiting.run_id]
    second.start(interval=0.1)
    try:
        second.stop(running.run_id)
        wait_until(lambda: _state(waiting.run_dir) == "finished", 30, "run waiting finished", interval=0.05)
        assert _state(running.run_dir) == "aborted"
    finally:
        second.close()
        first.active().process.wait(timeout=10)  # reap the zombie the first manager owns


def test_killed_child_is_failed(manager):
    job = manager.submit(_cfg("slow-kill", 100), access=FULL)
    wait_until(lambda: _state(job.run_dir) == "running", 30, "run job running", interval=0.05)
    os.killpg(job.pid, signal.SIGKILL)
    wait_until(lambda: _state(job.run_dir) == "failed", 30, "run job failed", interval=0.05)
    assert rundir.read_status(job.run_dir)["exit_code"] == -signal.SIGKILL


def test_studio_command_lists_only_changes(tmp_path):
    preset = tmp_path / "p.yaml"
    preset.write_text("training:\n  learning_rate: 0.001\n")
    cfg = C.load(preset, {"training.max_steps": 5, "data.datasets": ["a.jsonl", "b b.jsonl"]})
    cmd = jobs.studio_command(cfg, preset, "presets/p.yaml")
    assert cmd == "studio train presets/p.yaml --set 'data.datasets=a.jsonl,b b.jsonl' --set training.max_steps=5"
    assert jobs.studio_command(C.RunConfig()) == "studio train"


# -- metrics ---------------------------------------------------------------------------------------------------------------


def _write_metrics(run: Path, rows: list[dict]) -> None:
    run.mkdir(parents=True, exist_ok=True)
    (run / rundir.METRICS).write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"step": 9, "lo')  # half a line


def test_load_metrics_long_form_with_smoothed_loss(tmp_path):
    run = tmp_path / "r1"
    _write_metrics(run, [{"step": 1, "loss": 4.0, "learning_rate": 1e-3, "lr": 1e-3, "grad_norm": 1.0, "tokens_per_s": 50.0,
                          "epoch": 0.1, "elapsed": 1.0, "kind": "train"},
                         {"step": 2, "loss": 2.0, "learning_rate": 5e-4, "kind": "train"},
                         {"step": 2, "eval_loss": 2.5, "kind": "eval"},
                         {"step": 2, "train_loss": 3.0, "kind": "summary"}])
    df = metrics.load_metrics(run, smoothing=0.5)
    assert list(df.columns) == metrics.COLUMNS
    assert metrics.charts_present(df) == ["loss", "learning_rate", "grad_norm", "tokens_per_s"]
    loss = metrics.chart_frame(df, "loss")
    assert sorted(loss["series"].unique()) == ["eval_loss", "loss", "loss" + metrics.SMOOTHED]  # train and eval: one chart
    smooth = loss[loss["series"] == "loss" + metrics.SMOOTHED]["value"].tolist()
    assert smooth[0] == pytest.approx(4.0)  # bias-corrected: the first point is the first value
    assert smooth[1] == pytest.approx((0.5 * 0.5 * 4 + 0.5 * 2) / 0.75)
    assert len(metrics.chart_frame(df, "learning_rate")) == 2  # "lr" duplicates learning_rate: drawn once
    assert metrics.reward_columns(df) == []
    assert metrics.load_metrics(tmp_path / "missing").empty


def test_chart_view_x_axes_last_n_clipping_log_scale_and_csv(tmp_path):
    run = tmp_path / "r"
    rows = [{"step": 0, "epoch": 0.0, "elapsed": 0.5, "eval_loss": 5.0, "kind": "eval"}]
    rows += [{"step": s, "epoch": s / 4, "elapsed": 2.0 * s, "num_tokens": 100 * s, "loss": 4.0 - 0.1 * s, "kind": "train",
              "rss_bytes": 2_000_000_000 + s, "learning_rate": 1e-3} for s in range(1, 9)]
    rows[4]["loss"] = 400.0  # one spike (step 4)
    rows.append({"step": 8, "epoch": 2.0, "elapsed": 17.0, "eval_loss": 3.0, "kind": "eval"})
    _write_metrics(run, rows)
    df = metrics.load_metrics(run, smoothing=0)
    assert list(df.columns) == metrics.COLUMNS and "memory" in metrics.charts_present(df)
    by_x = {x: metrics.chart_view(df, "loss", x=x) for x in metrics.X_AXES}
    evals = by_x["step"][by_x["step"]["series"] == "eval_loss"]
    assert evals["step"].tolist() == [0.0, 8.0] and evals["value"].tolist() == [5.0, 3.0]  # the curve starts at step 0
    assert by_x["epoch"][by_x["epoch"]["series"] == "loss"]["epoch"].tolist() == [s / 4 for s in range(1, 9)]
    tokens = by_x["tokens"]
    assert tokens[tokens["series"] == "loss"]["tokens"].tolist() == [100.0 * s for s in range(1, 9)]
    assert tokens[tokens["series"] == "eval_loss"]["tokens"].tolist() == [800.0]  # carried forward; step 0 has none
    assert by_x["time"][by_x["time"]["series"] == "loss"]["time"].tolist() == [2.0 * s for s in range(1, 9)]
    last = metrics.chart_view(df, "loss", last_n=3)
    assert last[last["series"] == "loss"]["step"].tolist() == [6.0, 7.0, 8.0]
    raw = metrics.chart_view(df, "loss")
    clipped = metrics.chart_view(df, "loss", clip=True)
    assert raw["value"].max() == 400.0 and clipped[clipped["series"] == "loss"]["value"].max() < 10
    logged = metrics.chart_view(df, "loss", log_scale=True)
    assert logged[logged["series"] == "loss"]["value"].max() == pytest.approx(math.log10(400.0))
    memory = metrics.chart_view(df, "memory")
    assert set(memory["series"]) == {"RSS (GB)"} and memory["value"].iloc[0] == pytest.approx(2.0, abs=1e-6)
    csv = metrics.to_csv(df, "loss", tmp_path / "loss.csv")
    import pandas as pd

    back = pd.read_csv(csv)
    assert list(back.columns) == metrics.COLUMNS and len(back) == len(metrics.chart_frame(df, "loss"))
    with pytest.raises(ValueError, match="x axis"):
        metrics.chart_view(df, "loss", x="wall")


def test_reward_charts_and_overlay(tmp_path):
    a, b = tmp_path / "dpo", tmp_path / "sft"
    _write_metrics(a, [{"step": s, "loss": 0.7, "rewards/chosen": 0.1 * s, "rewards/rejected": -0.1 * s,
                        "rewards/margins": 0.2 * s, "rewards/accuracies": 0.5, "kl": 0.01} for s in (1, 2)])
    _write_metrics(b, [{"step": s, "loss": 1.0 / s} for s in (1, 2, 3)])
    df = metrics.overlay([a, b])
    assert metrics.reward_columns(df) == ["kl", "rewards/accuracies", "rewards/chosen", "rewards/margins", "rewards/rejected"]
    assert set(metrics.chart_frame(df, "rewards")["series"]) == {"dpo · rewards/chosen", "dpo · rewards/rejected"}
    assert {"dpo · loss", "sft · loss", "sft · loss" + metrics.SMOOTHED} <= set(metrics.chart_frame(df, "loss")["series"])
    assert metrics.charts_present(df)[-3:] == ["margins", "accuracies", "kl"]
