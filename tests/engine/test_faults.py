"""Faults on the run side, injected for real where this machine allows: the trainer killed with SIGKILL in the middle of
a checkpoint save, and a disk that fills up during one (a real tmpfs when we are root, else an injected ENOSPC).
What must hold: resume takes the last *complete* checkpoint and says which one it skipped; a full disk ends the run with
"disk full while saving checkpoint ..." in status.json and the previous checkpoint still resumes; metrics.jsonl keeps
each step once, in order.

The real faults run ``python -m studio.train`` in a test-only child (FAULT_CHILD below) that stops at one save and
signals the test, so the test kills it or fills its disk at a known moment. Run: ``pytest tests/engine/test_faults.py``.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from studio import config as C
from studio.engine import rundir
from studio.engine.jobs import child
from studio.engine.train import common
from studio.engine.train.runner import disk_full, prepare_run_dir, run
from tests.helpers import wait_until, write_jsonl

CHILD_TIMEOUT_S = 300  # the child imports torch and transformers: seconds alone, a minute on a busy 2-core machine

FAULT_CHILD = textwrap.dedent('''
    """`python -m studio.train ARGS` with one fault point at the checkpoint save of step FAULT_STEP (test only).

    FAULT_MODE=cut_state: write half of trainer_state.json (the file a save writes last), signal FAULT_READY, then hang
    until killed. FAULT_MODE=pause_after_save: after that save completes, signal FAULT_READY and wait for FAULT_GO."""
    import dataclasses, json, os, sys, time
    from pathlib import Path

    from transformers.trainer_callback import TrainerState

    from studio.engine.train import callbacks

    AT, MODE = int(os.environ["FAULT_STEP"]), os.environ["FAULT_MODE"]
    READY, GO = Path(os.environ["FAULT_READY"]), Path(os.environ.get("FAULT_GO", "/nonexistent"))
    save_state, on_save = TrainerState.save_to_json, callbacks.RunFolderCallback.on_save


    def cut_state(self, json_path):
        if self.global_step != AT:
            return save_state(self, json_path)
        text = json.dumps(dataclasses.asdict(self), indent=2)
        with open(json_path, "w", encoding="utf-8") as fh:
            fh.write(text[: len(text) // 2])
        READY.write_text(str(os.getpid()))
        time.sleep(3600)


    def pause_after_save(self, args, state, control, **kw):
        result = on_save(self, args, state, control, **kw)
        if state.global_step == AT:
            READY.write_text(str(os.getpid()))
            while not GO.exists():
                time.sleep(0.05)
        return result


    if MODE == "cut_state":
        TrainerState.save_to_json = cut_state
    else:
        callbacks.RunFolderCallback.on_save = pause_after_save
    from studio.train import main

    sys.exit(main(sys.argv[1:]))
''')


def make_cfg(tiny_model_dir, data, **overrides) -> C.RunConfig:
    base = {"model.name_or_path": str(tiny_model_dir), "data.datasets": [str(data)], "training.max_steps": 6,
            "training.save_steps": 2, "training.per_device_train_batch_size": 4, "training.learning_rate": 5e-3,
            "training.cutoff_len": 64, "training.logging_steps": 1}
    base.update(overrides)
    return C.check(C.apply_overrides(C.RunConfig(), base))


class FaultChild:
    """The test-only trainer in its own session (as the studio starts one), its output in ``tmp/child.out``."""

    def __init__(self, tmp: Path, cfg: C.RunConfig, run_dir: Path, mode: str, step: int):
        self.tmp, self.ready, self.go = tmp, tmp / "fault.ready", tmp / "fault.go"
        script = tmp / "fault_child.py"
        script.write_text(FAULT_CHILD)
        config = tmp / "config.yaml"
        C.save(cfg, config)
        env = child.child_env({"FAULT_STEP": str(step), "FAULT_MODE": mode, "FAULT_READY": str(self.ready),
                               "FAULT_GO": str(self.go)})
        with open(tmp / "child.out", "wb") as out:
            self.proc = child.spawn([sys.executable, str(script), str(config), "--output-dir", str(run_dir)], out, env=env)

    def output(self) -> str:
        return (self.tmp / "child.out").read_text(encoding="utf-8", errors="replace")[-3000:]

    def wait_ready(self) -> float:
        started = time.monotonic()
        wait_until(lambda: self.ready.exists() or self.proc.poll() is not None, CHILD_TIMEOUT_S, "the fault point")
        assert self.proc.poll() is None, f"the child ended before its fault point:\n{self.output()}"
        return time.monotonic() - started

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)


def train_steps(run_dir: Path) -> list[int]:
    return [m["step"] for m in rundir.read_metrics(run_dir) if m.get("kind") == "train"]


def resume(cfg: C.RunConfig, run_dir: Path) -> dict:
    """What ``studio train RUN/config.yaml --resume`` does, in this process."""
    folder = prepare_run_dir(cfg, str(run_dir), resume=True)
    assert run(cfg, folder, resume=True) == 0, rundir.tail_log(run_dir)
    return rundir.read_status(run_dir)


# -- checkpoints that are not whole ----------------------------------------------------------------------------------------


def _checkpoint(root: Path, step: int, files: dict[str, str]) -> Path:
    folder = root / "checkpoints" / f"checkpoint-{step}"
    folder.mkdir(parents=True)
    for name, text in files.items():
        (folder / name).write_text(text)
    return folder


def test_latest_checkpoint_skips_incomplete_folders_and_names_them(tmp_path):
    whole = {"adapter_model.safetensors": "w", "optimizer.pt": "o", "trainer_state.json": '{"global_step": 2}'}
    _checkpoint(tmp_path, 2, whole)
    _checkpoint(tmp_path, 4, {"adapter_model.safetensors": "w", "optimizer.pt": "o"})  # killed before its state file
    _checkpoint(tmp_path, 6, dict(whole, **{"trainer_state.json": '{"global_st'}))  # killed while writing it
    _checkpoint(tmp_path, 8, {"optimizer.pt": "o", "trainer_state.json": "{}"})  # half deleted by rotation
    _checkpoint(tmp_path, 10, {"adapter_model.safetensors": "w", "trainer_state.json": "{}"})
    (tmp_path / "checkpoints" / "checkpoint-last").mkdir()
    said: list[str] = []
    found = common.latest_checkpoint(tmp_path, said.append)
    print(f"picked {found.name}; skipped: {said}")
    assert found.name == "checkpoint-2"
    assert [s.split("checkpoint-")[1].split(" ")[0] for s in said] == ["10", "8", "6", "4"]
    assert "no optimizer state" in said[0] and "no model weights" in said[1]
    assert "trainer_state.json is unreadable" in said[2] and "no trainer_state.json" in said[3]
    assert all((tmp_path / "checkpoints" / f"checkpoint-{n}").is_dir() for n in (4, 6, 8, 10))  # skipped, not deleted
    assert common.latest_checkpoint(tmp_path / "nothing", said.append) is None


def test_resume_moves_the_lost_steps_and_a_broken_line_out_of_the_metrics(tmp_path):
    write_jsonl(tmp_path / "metrics.jsonl", [{"step": s, "kind": "train", "loss": 1.0 / s} for s in (1, 2, 3, 4)])
    with open(tmp_path / "metrics.jsonl", "a") as fh:
        fh.write('{"step": 5, "lo')  # the write a kill or a full disk cut short
    assert rundir.supersede_metrics_after(tmp_path, 2) == 3
    assert (tmp_path / "metrics.jsonl").read_text().endswith("\n")
    assert [m["step"] for m in rundir.read_metrics(tmp_path)] == [1, 2]
    moved = (tmp_path / rundir.SUPERSEDED_METRICS).read_text().splitlines()
    assert moved[:2] == [json.dumps({"step": s, "kind": "train", "loss": 1.0 / s}) for s in (3, 4)]
    assert moved[2] == '{"step": 5, "lo'
    assert rundir.supersede_metrics_after(tmp_path, 2) == 0  # nothing left to move: the file is not rewritten


def test_disk_full_is_recognised_in_each_form_libraries_raise_it(tmp_path):
    assert disk_full(OSError(errno.ENOSPC, "No space left on device"))
    assert disk_full(RuntimeError("Error while serializing: I/O error: No space left on device (os error 28)"))
    try:
        try:
            raise OSError(errno.EDQUOT, "Disk quota exceeded")
        except OSError as inner:
            raise RuntimeError("save failed") from inner
    except RuntimeError as outer:
        assert disk_full(outer)
    cryptic = RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598")  # torch.save's own
    assert not disk_full(cryptic) and not disk_full(cryptic, tmp_path)  # this disk has room: not a full disk
    assert not disk_full(ValueError("bad row"), tmp_path)


# -- the trainer killed in the middle of a save ----------------------------------------------------------------------------


def test_kill_9_during_a_checkpoint_save_then_resume_uses_the_last_complete_one(tiny_model_dir, alpaca_file, tmp_path):
    run_dir = tmp_path / "run"
    cfg = make_cfg(tiny_model_dir, alpaca_file)
    child_proc = FaultChild(tmp_path, cfg, run_dir, mode="cut_state", step=4)
    try:
        waited = child_proc.wait_ready()
    finally:
        child_proc.kill()
    partial = run_dir / "checkpoints" / "checkpoint-4"
    assert (partial / "adapter_model.safetensors").is_file() and (partial / "optimizer.pt").is_file()
    assert common.checkpoint_problem(partial).startswith("trainer_state.json is unreadable")
    assert rundir.effective_status(run_dir)["state"] == "failed"  # the UI shows the killed run as ended
    assert train_steps(run_dir) == [1, 2, 3, 4]  # step 4 was logged before its save began

    started = time.monotonic()
    status = resume(cfg, run_dir)
    took = time.monotonic() - started
    log = (run_dir / rundir.LOG).read_text(encoding="utf-8")
    assert f"resume: skipping {partial} (incomplete: trainer_state.json is unreadable" in log
    assert f"resuming from {run_dir / 'checkpoints' / 'checkpoint-2'}" in log
    assert status["state"] == "finished" and status["step"] == 6 and status["resumed"] is True
    assert train_steps(run_dir) == [1, 2, 3, 4, 5, 6]  # steps 3 and 4 once, from the run that kept them
    moved = [json.loads(x)["step"] for x in (run_dir / rundir.SUPERSEDED_METRICS).read_text().splitlines()]
    assert moved == [3, 4]
    assert common.checkpoint_problem(run_dir / "checkpoints" / "checkpoint-6") is None
    print(f"killed -9 inside the save of checkpoint-4 ({waited:.1f} s after start); resume skipped it, took "
          f"checkpoint-2 and finished 6 steps in {took:.1f} s; metrics steps {train_steps(run_dir)}, superseded {moved}")


# -- the disk full during a save -------------------------------------------------------------------------------------------


def test_disk_full_during_a_save_is_named_and_the_previous_checkpoint_resumes(tiny_model_dir, alpaca_file, tmp_path,
                                                                              monkeypatch):
    """ENOSPC injected into the last write of the step-4 save (runs anywhere; the tmpfs test below fills a real disk)."""
    from transformers.trainer_callback import TrainerState

    save_state = TrainerState.save_to_json

    def full_at_step_4(self, json_path):
        if self.global_step == 4:
            raise OSError(errno.ENOSPC, "No space left on device", json_path)
        return save_state(self, json_path)

    monkeypatch.setattr(TrainerState, "save_to_json", full_at_step_4)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    cfg = make_cfg(tiny_model_dir, alpaca_file)
    assert run(cfg, run_dir) == 1
    status = rundir.read_status(run_dir)
    error = status["error"]
    assert status["state"] == "failed" and status["exit_code"] == 1
    assert error.startswith(f"disk full while saving checkpoint {run_dir / 'checkpoints' / 'checkpoint-4'}"), error
    assert "the last complete checkpoint, checkpoint-2, is kept" in error and "--resume" in error
    assert not (run_dir / "checkpoints" / "checkpoint-4").exists()  # its half was removed to give status.json room
    assert common.checkpoint_problem(run_dir / "checkpoints" / "checkpoint-2") is None
    monkeypatch.undo()
    status = resume(cfg, run_dir)
    assert status["state"] == "finished" and status["step"] == 6 and train_steps(run_dir) == [1, 2, 3, 4, 5, 6]
    print(f"status.json said: {error}\nresumed from checkpoint-2 and finished at step 6")


@pytest.fixture
def small_disk(tmp_path):
    """A 16 MiB tmpfs (needs root and a mount that works here); unmounted afterwards."""
    if os.geteuid() != 0 or not shutil.which("mount"):
        pytest.skip("mounting a tmpfs needs root; the injected-ENOSPC test covers the same path")
    mnt = tmp_path / "small_disk"
    mnt.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m,mode=0700", "tmpfs", str(mnt)], capture_output=True,
                          text=True)
    if done.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def _used_bytes(folder: Path) -> int:
    return sum(p.stat().st_blocks * 512 for p in folder.rglob("*") if p.is_file())


def _fill(disk: Path, leave: int) -> Path:
    """A file that leaves ``leave`` bytes free on ``disk``."""
    filler = disk / "filler"
    size = shutil.disk_usage(disk).free - leave
    with open(filler, "wb") as fh:
        for _ in range(size // (1 << 20)):
            fh.write(b"\0" * (1 << 20))
        fh.write(b"\0" * (size % (1 << 20)))
    return filler


def test_a_real_full_disk_during_a_save_is_named_and_the_previous_checkpoint_resumes(tiny_model_dir, alpaca_file,
                                                                                     tmp_path, small_disk):
    run_dir = small_disk / "run"
    cfg = make_cfg(tiny_model_dir, alpaca_file)
    child_proc = FaultChild(tmp_path, cfg, run_dir, mode="pause_after_save", step=2)
    try:
        child_proc.wait_ready()
        # room for all of checkpoint-4 but its last ~50 KiB: the save fails part way (in torch.save of the optimizer)
        filler = _fill(small_disk, _used_bytes(run_dir / "checkpoints" / "checkpoint-2") - 48 * 1024)
        child_proc.go.touch()
        code = child_proc.proc.wait(timeout=CHILD_TIMEOUT_S)
    finally:
        child_proc.kill()
    status = rundir.read_status(run_dir)
    error = status.get("error") or ""
    assert code == 1 and status["state"] == "failed", child_proc.output()
    assert error.startswith(f"disk full while saving checkpoint {run_dir / 'checkpoints' / 'checkpoint-4'}"), error
    assert "checkpoint-2, is kept" in error
    assert common.checkpoint_problem(run_dir / "checkpoints" / "checkpoint-2") is None
    assert not list(run_dir.glob(".*.tmp")), "a failed status write left its temp file"
    filler.unlink()  # the user frees space, then resumes
    status = resume(cfg, run_dir)
    assert status["state"] == "finished" and train_steps(run_dir) == [1, 2, 3, 4, 5, 6]
    print(f"tmpfs filled during the save of checkpoint-4; status.json said: {error}\n"
          f"after freeing space, --resume went on from checkpoint-2 to step 6")
