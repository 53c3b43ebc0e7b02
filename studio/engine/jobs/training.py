"""The training job queue: run folders waiting their turn, one child ``python -m studio.train`` process at a time (or,
for a run of several processes, one ``accelerate launch`` of it: see jobs/distributed.py).

The UI (or any caller) submits a RunConfig; the manager makes the run folder (config.yaml, command.txt, status "queued")
and starts the child when no other run is active. The child writes everything else (status, metrics, log); the manager only
reaps it and fills in status.json when the child could not (crash at import, killed). A background thread polls once a
second, so the queue moves on with no browser open, and ``recover()`` re-adopts a running child and the queued runs left by
a previous studio process: the queue lives on disk, not in this process. ``resume()`` queues an aborted or failed run
again, to continue from its last checkpoint.

Under ``accelerate launch`` the child is the launcher and the training processes (ranks) are its children, each in a
session of its own (torchrun's choice): a stop is first the STOP file every rank reads, then SIGTERM to the ranks (the
launcher sees them end), then SIGKILL to the launcher and every rank (``child.signal_tree``).

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
from studio.engine.jobs import child, distributed

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


def job_argv(run_dir: Path, cfg: config_mod.RunConfig, python: str = sys.executable, resume: bool = False) -> list[str]:
    """What the queue starts for ``cfg``: ``accelerate launch`` of the run when it needs several processes (or DeepSpeed/
    FSDP), else the trainer itself."""
    if distributed.needs_launcher(cfg):
        return distributed.launch_argv(run_dir, cfg, python, resume)
    return train_argv(run_dir, python) + (["--resume"] if resume else [])


def launch_problems(cfg: config_mod.RunConfig) -> None:
    """ConfigError listing every reason this machine cannot start ``cfg.distributed`` (see jobs/distributed.py)."""
    errors = distributed.problems(cfg)
    if errors:
        raise config_mod.ConfigError("invalid configuration:\n  - " + "\n  - ".join(errors))


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

    @property
    def launcher(self) -> bool:
        """``accelerate launch``: the ranks are children of this process, not this process."""
        return distributed.is_launch_argv(self.argv)

    def alive(self) -> bool:
        if self.process is not None:
            return self.process.poll() is None
        return rundir.trainer_alive(self.run_dir)

    def record(self) -> dict:
        """The stamp that identifies this job's process (see jobs/child.py)."""
        if self.process is not None:
            return child.stamp(self.process.pid) if self.process.poll() is None else {}
        return rundir.job_record(rundir.read_status(self.run_dir))


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
        launch_problems(cfg)
        root = Path(cfg.output.runs_dir).expanduser() if cfg.output.runs_dir else self.runs_root
        run = rundir.new_run_dir(root, cfg.output.run_name)
        config_mod.save(cfg, run / rundir.CONFIG)
        return self._enqueue(run, cfg, resume=False)

    def resume(self, run_id: str, *, access: Access) -> Job:
        """Queue an aborted or failed run again: it continues from its last checkpoint in the same folder, with the
        processes its config asks for (``access``: the config must still name only what the caller may use)."""
        run = self.find(run_id)
        if run is None:
            raise config_mod.ConfigError(f"no run '{run_id}' under {self.runs_root}")
        with self._lock:
            if any(j.run_id == run.name for j in self._queue) or (self._active and self._active.run_id == run.name):
                raise config_mod.ConfigError(f"run '{run.name}' is already queued or running")
        state = rundir.effective_status(run).get("state")
        if state not in ("aborted", "failed"):
            raise config_mod.ConfigError(f"run '{run.name}' is {state or 'unknown'}: only an aborted or failed run resumes")
        if not any((run / rundir.CHECKPOINTS).glob("checkpoint-*")):
            raise config_mod.ConfigError(f"run '{run.name}' has no checkpoint in {run / rundir.CHECKPOINTS} to resume from")
        cfg = config_mod.check(config_mod.load(run / rundir.CONFIG))
        access.config(cfg)
        launch_problems(cfg)
        (run / LAUNCHED).unlink(missing_ok=True)  # this studio starts it again; the exclusive marker guards that start
        (run / rundir.STOP).unlink(missing_ok=True)  # the old stop request (on a worker machine no rank 0 clears it)
        return self._enqueue(run, cfg, resume=True)

    def _enqueue(self, run: Path, cfg: config_mod.RunConfig, resume: bool) -> Job:
        if distributed.needs_launcher(cfg):
            distributed.write_accelerate_config(run, cfg)
        argv = job_argv(run, cfg, self.python, resume)
        (run / rundir.COMMAND).write_text(shlex.join(argv) + "\n", encoding="utf-8")
        rundir.write_status(run, state="queued", queued_at=time.time(), name=cfg.output.run_name, stage=cfg.method.stage,
                            finetuning_type=cfg.method.finetuning_type, max_steps=max(cfg.training.max_steps, 0),
                            resumed=resume, exit_code=None, ended_at=None, error=None, launcher=None,
                            worker_of=(f"{cfg.distributed.main_process_ip}:{cfg.distributed.main_process_port}"
                                       if distributed.is_worker_machine(cfg) else None))
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
                    found_active = Job(info.path, self._argv_of(info.path), pid=int(rundir.job_record(status)["pid"]))
                elif info.state == "queued":  # started by an earlier studio, died before the trainer took over
                    rundir.write_status(info.path, state="failed", ended_at=time.time(),
                                        error="the training process ended before it started training")
            elif info.state == "queued":
                queued.append(Job(info.path, self._argv_of(info.path, bool(status.get("resumed"))),
                                  queued_at=status.get("queued_at") or 0))
        queued.sort(key=lambda j: j.queued_at)
        with self._lock:
            known = {j.run_id for j in self._queue} | ({self._active.run_id} if self._active else set())
            if self._active is None and found_active is not None:
                self._active = found_active
            self._queue += [j for j in queued if j.run_id not in known]
            self._last = self._last or (found_active.run_dir if found_active else None)

    # -- internals --------------------------------------------------------------------------------------------------------

    def _argv_of(self, run: Path, resume: bool = False) -> list[str]:
        """The command of a run folder found on disk, from its config (a config that no longer loads: the plain trainer,
        which then names the problem in the run's log)."""
        try:
            return job_argv(run, config_mod.load(run / rundir.CONFIG), self.python, resume)
        except config_mod.ConfigError:
            return train_argv(run, self.python)

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
        stamp = child.stamp(job.pid)
        # the state stays "queued" until the child writes "running" itself: it refuses a folder already marked running.
        # A machine that is not the main one has no rank 0 to write it: its run is running from the launch on.
        worker = rundir.read_status(job.run_dir).get("worker_of")
        extra = dict(state="running", started_at=time.time()) if worker else {}
        rundir.write_status(job.run_dir, launched_at=time.time(), launcher=stamp, **stamp, **extra)
        self._active = job
        self._last = job.run_dir

    def _escalate(self, job: Job) -> None:
        if job.stop_requested_at is None or job.pid is None:
            return
        waited = time.time() - job.stop_requested_at
        sig = signal.SIGKILL if waited > KILL_AFTER_S else signal.SIGTERM if waited > TERM_AFTER_S and not job.termed else None
        if sig is None:
            return
        if job.launcher:  # SIGTERM the ranks only (each stops after its step and saves); SIGKILL everything
            child.signal_tree(job.record(), sig, job.run_id, root=sig == signal.SIGKILL)
        else:
            child.signal_group(job.record(), sig, job.run_id)  # only that very process: never a reused pid
        job.termed = True

    def _finish(self, job: Job) -> None:
        settle(job.run_dir, job.process.poll() if job.process is not None else None, job.stop_requested_at is not None)
        self._last = job.run_dir


def settle(run_dir: Path, code: int | None, stopped: bool) -> None:
    """Make status.json final when the child could not (it crashed, was killed, never started its trainer, or is the
    launcher of a machine that is not the main one, where no rank writes the state)."""
    status = rundir.read_status(run_dir)
    fields: dict = {}
    if code is not None and status.get("exit_code") is None:
        fields["exit_code"] = code
    if status.get("state") in rundir.ACTIVE_STATES or not status:
        if stopped:
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
            rundir.write_status(run_dir, **fields)
        except OSError as exc:  # a full disk must not keep the queue stuck on a dead run; readers see it as ended
            print(f"[studio] could not update {run_dir / rundir.STATUS}: {exc}", file=sys.stderr)


def log_tail(run_dir: Path, lines: int = 40) -> str:
    """The last non-blank lines of the run's train.log, or of what the child printed before its log existed."""
    return rundir.tail_log(run_dir, lines)
