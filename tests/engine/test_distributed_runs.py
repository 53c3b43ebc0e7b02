"""Runs of several processes through the studio's own queue (studio.engine.jobs.training), as the Train tab starts them.

- A fake ``accelerate launch`` (a launcher whose two "ranks" live in sessions of their own, as torchrun starts them)
  checks in about a second that Stop reaches every rank and that a re-attached studio stops the whole group.
- Real runs: 2 CPU processes over gloo (``accelerate launch`` with the accelerate config the studio writes) match a
  1-process run; two "machines" as two process groups on 127.0.0.1, each started by its own queue. (Start, Stop and
  Resume of 2 processes from the Train tab's own handlers: tests/ui/test_hardware_section.py.) The tiny random Llama
  keeps each launch to seconds of training (most of the time is imports: three Python processes per launch).

Run: ``pytest tests/engine/test_distributed_runs.py``.
"""

from __future__ import annotations

import os
import socket
import stat
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from studio import config as C
from studio.engine import rundir
from studio.engine.access import FULL
from studio.engine.jobs import child, distributed
from studio.engine.jobs import training as jobs
from tests.helpers import wait_until

LAUNCH_S = 300  # one launch on a busy 2-core machine: imports in three processes, then a few steps

FAKE_LAUNCHER = textwrap.dedent('''
    """Stands in for `python -m accelerate.commands.launch ... --output-dir=RUN`: two ranks in sessions of their own."""
    import os, signal, subprocess, sys, time
    run = next(a.split("=", 1)[1] for a in sys.argv if a.startswith("--output-dir="))
    note = lambda name: open(os.path.join(run, name), "w").close()
    signal.signal(signal.SIGTERM, lambda *_: note("launcher-got-SIGTERM"))
    rank = ("import os, signal, sys, time; signal.signal(signal.SIGTERM, lambda *_: open(sys.argv[1], 'w').close()); "
            "time.sleep(600)")
    ranks = [subprocess.Popen([sys.executable, "-c", rank, os.path.join(run, f"rank{i}-got-SIGTERM")],
                              start_new_session=True) for i in range(2)]
    with open(os.path.join(run, "ranks.txt"), "w") as fh:
        fh.write(" ".join(str(p.pid) for p in ranks))
    for p in ranks:
        p.wait()
''')


def two_procs(tiny_model_dir, data, steps: int, **over) -> C.RunConfig:
    return C.apply_overrides(C.RunConfig(), {
        "model.name_or_path": str(tiny_model_dir), "data.datasets": [str(data)], "training.max_steps": steps,
        "training.per_device_train_batch_size": 4, "training.cutoff_len": 96, "distributed.num_processes": 2, **over})


def _state(run: Path) -> str | None:
    return rundir.read_status(run).get("state")


# -- the whole group, with a fake launcher -----------------------------------------------------------------------------


@pytest.fixture
def fake_launcher(tmp_path, monkeypatch) -> str:
    script = tmp_path / "fake_launcher.py"
    script.write_text(FAKE_LAUNCHER)
    wrapper = tmp_path / "python"
    wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{script}" "$@"\n')
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setattr(distributed, "cpu_cores", lambda: 4)
    monkeypatch.setattr(jobs, "TERM_AFTER_S", 0.3)
    monkeypatch.setattr(jobs, "KILL_AFTER_S", 1.5)
    return str(wrapper)


def _ranks(run: Path) -> list[int]:
    text = wait_until(lambda: (run / "ranks.txt").is_file() and (run / "ranks.txt").read_text(), 30, "the fake ranks")
    return [int(p) for p in text.split()]


def test_stop_reaches_every_rank_of_a_launched_group(tmp_path, fake_launcher):
    manager = jobs.JobManager(tmp_path / "runs", python=fake_launcher)
    manager.start(interval=0.1)
    try:
        job = manager.submit(two_procs("m", "d.jsonl", 100), access=FULL)
        assert job.launcher and job.argv[1:3] == ["-m", "accelerate.commands.launch"]
        ranks = _ranks(job.run_dir)
        assert sorted(child.descendants(job.pid)) == sorted(ranks)  # out of the launcher's group, found all the same
        assert all(os.getpgid(r) == r for r in ranks)
        manager.stop(job.run_id)  # the ranks ignore the STOP file and SIGTERM here: only SIGKILL ends them
        wait_until(lambda: manager.active() is None, 30, "the group to end", interval=0.05)
        assert not any(child.alive(p) for p in ranks + [job.pid])
        assert _state(job.run_dir) == "aborted"
        # SIGTERM went to each rank, not to the launcher (which would kill its ranks 30 s later, mid-checkpoint)
        assert (job.run_dir / "rank0-got-SIGTERM").exists() and (job.run_dir / "rank1-got-SIGTERM").exists()
        assert not (job.run_dir / "launcher-got-SIGTERM").exists()
    finally:
        manager.close()


def test_reattached_studio_stops_the_whole_group(tmp_path, fake_launcher):
    first = jobs.JobManager(tmp_path / "runs", python=fake_launcher)
    job = first.submit(two_procs("m", "d.jsonl", 100), access=FULL)
    ranks = _ranks(job.run_dir)
    second = jobs.JobManager(tmp_path / "runs", python=fake_launcher)  # the first studio "crashed"
    second.recover()
    assert second.active() is not None and second.active().run_id == job.run_id and second.active().launcher
    second.start(interval=0.1)
    try:
        second.stop(job.run_id)
        wait_until(lambda: not any(child.alive(p) for p in ranks + [job.pid]), 30, "every process of the group to end",
                   interval=0.05)
    finally:
        second.close()
        first.active().process.wait(timeout=10)


# -- real runs: 2 CPU processes over gloo ------------------------------------------------------------------------------


@pytest.fixture
def manager(tmp_path):
    pytest.importorskip("accelerate")
    if distributed.cpu_cores() < 2:
        pytest.skip("2 CPU processes need 2 cores")
    jm = jobs.JobManager(tmp_path / "runs")
    jm.start(interval=0.2)
    yield jm
    jm.close()


def _train_steps(run: Path) -> list[int]:
    return [m["step"] for m in rundir.read_metrics(run) if m.get("kind") == "train"]


def _losses(run: Path) -> list[float]:
    return [m["loss"] for m in rundir.read_metrics(run) if m.get("kind") == "train"]


def test_two_processes_match_one_process(manager, tiny_model_dir, alpaca_file):
    """Same global batch (2 x 4 rows vs 1 x 8): the same adapter tensors, and a loss curve close to the 1-process one."""
    from safetensors import safe_open

    over = {"training.learning_rate": 2e-2, "training.lr_scheduler_type": "constant"}
    two = manager.submit(two_procs(tiny_model_dir, alpaca_file, 8, **over), access=FULL)
    one = manager.submit(two_procs(tiny_model_dir, alpaca_file, 8, **over, **{
        "distributed.num_processes": 1, "training.per_device_train_batch_size": 8}), access=FULL)
    wait_until(lambda: _state(one.run_dir) in ("finished", "failed") and manager.active() is None, 2 * LAUNCH_S,
               "both runs to end", interval=0.2)
    assert _state(two.run_dir) == _state(one.run_dir) == "finished", jobs.log_tail(two.run_dir)

    def shapes(run):
        with safe_open(str(run / "adapter" / "adapter_model.safetensors"), "pt") as f:
            return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}

    assert shapes(two.run_dir) == shapes(one.run_dir) and shapes(one.run_dir)
    a, b = _losses(two.run_dir), _losses(one.run_dir)
    assert len(a) == len(b) == 8
    gap = max(abs(x - y) for x, y in zip(a, b))
    drop = b[0] - min(b)
    print(f"\n2 processes {[round(x, 3) for x in a]}\n1 process   {[round(x, 3) for x in b]}\nmax gap {gap:.3f}, "
          f"1-process drop {drop:.3f}")
    assert drop > 0.1  # it learns, so "close" means something
    assert gap < drop / 4  # a summed (x2) or unsynchronised loss would be far off


def test_two_machines_on_loopback(tmp_path, tiny_model_dir, alpaca_file):
    """Two "machines" (two queues, two process groups) meet at 127.0.0.1; the worker checks the main is reachable."""
    pytest.importorskip("accelerate")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    queues = [jobs.JobManager(tmp_path / f"machine{i}") for i in (0, 1)]

    def cfg(rank):
        return two_procs(tiny_model_dir, alpaca_file, 4, **{
            "distributed.num_processes": 1, "distributed.num_machines": 2, "distributed.machine_rank": rank,
            "distributed.main_process_ip": "127.0.0.1", "distributed.main_process_port": port})

    for q in queues:
        q.start(interval=0.2)
    try:
        with pytest.raises(C.ConfigError, match=f"127.0.0.1:{port} is not reachable"):
            queues[1].submit(cfg(1), access=FULL)  # the main machine is not up yet
        main = queues[0].submit(cfg(0), access=FULL)
        wait_until(lambda: _listening(port), LAUNCH_S, "the main machine to listen")
        worker = queues[1].submit(cfg(1), access=FULL)
        assert _state(worker.run_dir) == "running"  # no rank 0 there: its queue says so from the launch on
        wait_until(lambda: all(q.active() is None for q in queues), LAUNCH_S, "both machines to end", interval=0.2)
    finally:
        for q in queues:
            q.close()
    st = rundir.read_status(main.run_dir)
    assert st["state"] == "finished" and st["world_size"] == 2 and st["num_machines"] == 2, jobs.log_tail(main.run_dir)
    assert _train_steps(main.run_dir) == [1, 2, 3, 4] and (main.run_dir / "adapter").is_dir()
    wst = rundir.read_status(worker.run_dir)
    assert wst["state"] == "finished" and wst["exit_code"] == 0 and wst["worker_of"] == f"127.0.0.1:{port}"
    assert not (worker.run_dir / rundir.METRICS).exists() and not (worker.run_dir / "adapter").exists()
    accel = yaml.safe_load((worker.run_dir / "accelerate.yaml").read_text())
    assert accel["machine_rank"] == 1 and accel["num_processes"] == 2 and accel["main_process_ip"] == "127.0.0.1"


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False
