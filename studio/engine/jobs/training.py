"""The training job queue: run folders waiting their turn, one child ``python -m studio.train`` process at a time.

The UI (or any caller) submits a RunConfig; the manager makes the run folder (config.yaml, command.txt, status "queued")
and starts the child when no other run is active. The child writes everything else (status, metrics, log); the manager only
reaps it and fills in status.json when the child could not (crash at import, killed). A background thread polls once a
second, so the queue moves on with no browser open, and ``recover()`` re-adopts a running child and the queued runs left by
a previous studio process: the queue lives on disk, not in this process.

Pure standard library + studio.config: importing this module never imports torch.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from studio import config as config_mod
from studio.engine import rundir
from studio.engine.access import Access
from studio.engine.jobs import child

TRAIN_MODULE = "studio.train"
CHILD_OUTPUT = rundir.CHILD_OUTPUT
LAUNCHED = ".launched"  # created with O_EXCL by the process that starts a run, so two studios never start it twice
TERM_AFTER_S = 5.0  # after a stop request, SIGTERM when the child has not stopped on its own (it checks STOP per step)
KILL_AFTER_S = 60.0  # ... and SIGKILL its process group when it still runs this long after


def train_argv(run_dir: Path, python: str = sys.executable) -> list[str]:
    """The exact command the studio starts for a run: the same one a user can type. Paths are absolute and passed as
    ``--opt=value``, so a runs folder whose name starts with '-' cannot become an option."""
    run_dir = Path(run_dir).absolute()
    return [python, "-m", TRAIN_MODULE, str(run_dir / rundir.CONFIG), f"--output-dir={run_dir}"]


def studio_command(cfg: config_mod.RunConfig, preset: str | Path | None = None, shown: str | None = None) -> str:
    """``studio train PRESET --set k=v ...``: the shell command that reproduces ``cfg`` (only the keys that differ from
    the preset, or from the defaults without one). ``shown`` is how the preset path is written (e.g. relative)."""
    base = config_mod.load(preset) if preset else config_mod.RunConfig()
    parts = ["studio", "train", shown or str(preset)] if preset else ["studio", "train"]
    for key, _, value in config_mod.diff(base, cfg):
        text = ",".join(value) if isinstance(value, list) else str(value).lower() if isinstance(value, bool) else str(value)
        parts += ["--set", f"{key}={text}"]
    return shlex.join(parts)


@dataclass
class Job:
    """One run folder in the queue or running. ``process`` is None for a child adopted from an earlier studio."""

    run_dir: Path
    argv: list[str]
    queued_at: float = field(default_factory=time.time)
    process: subprocess.Popen | None = None
    pid: int | None = None
    stop_requested_at: float | None = None
    termed: bool = False

    @property
    def run_id(self) -> str:
        return self.run_dir.name

    def alive(self) -> bool:
        if self.process is not None:
            return self.process.poll() is None
        return rundir.trainer_alive(self.run_dir)

    def record(self) -> dict:
        """The stamp that identifies this job's process (see jobs/child.py)."""
        if self.process is not None:
            return child.stamp(self.process.pid) if self.process.poll() is None else {}
        return rundir.read_status(self.run_dir)


class JobManager:
    """Process-wide queue of training runs; thread-safe; one active child at a time."""

    def __init__(self, runs_root: Path, python: str = sys.executable):
        self.runs_root = Path(runs_root)
        self.python = python
        self._lock = threading.RLock()
        self._queue: list[Job] = []
        self._active: Job | None = None
        self._last: Path | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- submitting -------------------------------------------------------------------------------------------------------

    def submit(self, cfg: config_mod.RunConfig, *, access: Access) -> Job:
        """Validate (``access``: what the caller may name and run; see engine/access.py), make the run folder, write
        config.yaml + command.txt + status queued, and queue it."""
        config_mod.check(cfg)
        access.config(cfg)
        root = Path(cfg.output.runs_dir).expanduser() if cfg.output.runs_dir else self.runs_root
        run = rundir.new_run_dir(root, cfg.output.run_name)
        config_mod.save(cfg, run / rundir.CONFIG)
        argv = train_argv(run, self.python)
        (run / rundir.COMMAND).write_text(shlex.join(argv) + "\n", encoding="utf-8")
        rundir.write_status(run, state="queued", queued_at=time.time(), name=cfg.output.run_name, stage=cfg.method.stage,
                            finetuning_type=cfg.method.finetuning_type, max_steps=max(cfg.training.max_steps, 0))
        job = Job(run, argv)
        with self._lock:
            self._queue.append(job)
            self._last = run
        self.poll()
        return job

    def cancel(self, run_id: str) -> bool:
        """Take a queued run out of the queue (status: aborted). False when it is not queued."""
        with self._lock:
            job = next((j for j in self._queue if j.run_id == run_id), None)
            if job is None:
                return False
            self._queue.remove(job)
        rundir.write_status(job.run_dir, state="aborted", ended_at=time.time(), error="cancelled before it started")
        return True

    def stop(self, run_id: str) -> bool:
        """Stop the active run (STOP file now, SIGTERM then SIGKILL if it lingers) or cancel a queued one."""
        with self._lock:
            job = self._active
            if job is None or job.run_id != run_id:
                return self.cancel(run_id)
            rundir.request_stop(job.run_dir)
            job.stop_requested_at = job.stop_requested_at or time.time()
        self.poll()
        return True

    # -- reading ----------------------------------------------------------------------------------------------------------

    def active(self) -> Job | None:
        with self._lock:
            return self._active

    def queued(self) -> list[Job]:
        with self._lock:
            return list(self._queue)

    def last_run(self) -> Path | None:
        """The active run, else the most recently submitted or finished one this process knows."""
        with self._lock:
            return self._active.run_dir if self._active else self._last

    def find(self, run_id: str) -> Path | None:
        """A run folder by id: a known job first, else a folder under runs_root."""
        with self._lock:
            for job in ([self._active] if self._active else []) + self._queue:
                if job.run_id == run_id:
                    return job.run_dir
        path = self.runs_root / run_id
        return path if run_id and "/" not in run_id and path.is_dir() else None

    # -- the loop ---------------------------------------------------------------------------------------------------------

    def poll(self) -> None:
        """Reap a finished child, escalate a lingering stop, start the next queued run. Safe to call from any thread."""
        with self._lock:
            job = self._active
            if job is not None:
                if job.alive():
                    self._escalate(job)
                    return
                self._finish(job)
                self._active = None
            while self._queue and self._active is None:
                self._launch(self._queue.pop(0))

    def start(self, interval: float = 1.0) -> None:
        """Poll in a daemon thread (idempotent)."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()

        def loop():
            while not self._stop.wait(interval):
                try:
                    self.poll()
                except Exception as exc:  # the loop must survive a bad run folder; the error goes to the server log
                    print(f"[studio] job poll failed: {exc!r}", file=sys.stderr)

        self._thread = threading.Thread(target=loop, name="studio-jobs", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def recover(self) -> None:
        """Adopt what an earlier studio left: a live child becomes the active job, queued folders rejoin the queue."""
        found_active, queued = None, []
        for info in reversed(rundir.list_runs(self.runs_root)):  # oldest first keeps the queue order
            status, launched = info.extra, (info.path / LAUNCHED).exists()
            if info.state in rundir.ACTIVE_STATES and (info.state == "running" or launched):
                if rundir.trainer_alive(info.path, status):  # that very process (pid and start time), not a reused pid
                    found_active = Job(info.path, train_argv(info.path, self.python), pid=int(status["pid"]))
                elif info.state == "queued":  # started by an earlier studio, died before the trainer took over
                    rundir.write_status(info.path, state="failed", ended_at=time.time(),
                                        error="the training process ended before it started training")
            elif info.state == "queued":
                queued.append(Job(info.path, train_argv(info.path, self.python), queued_at=status.get("queued_at") or 0))
        queued.sort(key=lambda j: j.queued_at)
        with self._lock:
            known = {j.run_id for j in self._queue} | ({self._active.run_id} if self._active else set())
            if self._active is None and found_active is not None:
                self._active = found_active
            self._queue += [j for j in queued if j.run_id not in known]
            self._last = self._last or (found_active.run_dir if found_active else None)

    # -- internals --------------------------------------------------------------------------------------------------------

    def _launch(self, job: Job) -> None:
        try:
            fd = os.open(job.run_dir / LAUNCHED, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            os.close(fd)
        except FileExistsError:  # another studio process already started it
            return
        try:
            with open(job.run_dir / CHILD_OUTPUT, "ab") as out:
                job.process = child.spawn(job.argv, out)
        except OSError as exc:
            rundir.write_status(job.run_dir, state="failed", ended_at=time.time(), error=f"could not start: {exc}")
            self._last = job.run_dir
            return
        job.pid = job.process.pid
        # the state stays "queued" until the child writes "running" itself: it refuses a folder already marked running
        rundir.write_status(job.run_dir, launched_at=time.time(), **child.stamp(job.pid))
        self._active = job
        self._last = job.run_dir

    def _escalate(self, job: Job) -> None:
        if job.stop_requested_at is None or job.pid is None:
            return
        waited = time.time() - job.stop_requested_at
        sig = signal.SIGKILL if waited > KILL_AFTER_S else signal.SIGTERM if waited > TERM_AFTER_S and not job.termed else None
        if sig is None:
            return
        child.signal_group(job.record(), sig, job.run_id)  # only that very process: never a reused pid
        job.termed = True

    def _finish(self, job: Job) -> None:
        """Make status.json final when the child could not (it crashed, was killed, or never started its trainer)."""
        code = job.process.poll() if job.process is not None else None
        status = rundir.read_status(job.run_dir)
        fields: dict = {}
        if code is not None and status.get("exit_code") is None:
            fields["exit_code"] = code
        if status.get("state") in rundir.ACTIVE_STATES:
            if job.stop_requested_at is not None:
                fields["state"] = "aborted"
            elif code == 0:
                fields["state"] = "finished"
            else:
                fields["state"] = "failed"
                why = f"exited with code {code}" if code is not None else "ended without reporting (killed?)"
                fields["error"] = status.get("error") or f"the training process {why}"
            fields["ended_at"] = time.time()
        if fields:
            try:
                rundir.write_status(job.run_dir, **fields)
            except OSError as exc:  # a full disk must not keep the queue stuck on a dead run; readers see it as ended
                print(f"[studio] could not update {job.run_dir / rundir.STATUS}: {exc}", file=sys.stderr)
        self._last = job.run_dir


def log_tail(run_dir: Path, lines: int = 40) -> str:
    """The last non-blank lines of the run's train.log, or of what the child printed before its log existed."""
    return rundir.tail_log(run_dir, lines)
