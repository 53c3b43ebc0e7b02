"""One training run from start to finish: pick the run folder, record config and command, tee the output into train.log,
keep status.json true (running -> finished | failed | aborted), dispatch to the method module.

``python -m studio.train`` and ``studio train`` both end here; the UI starts that same command as a child process.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
import traceback
from pathlib import Path

from studio import config as C
from studio.engine import rundir
from studio.engine.jobs import child
from studio.paths import runs_dir


class RunDirError(RuntimeError):
    """The requested run folder cannot be used (busy, or holding a finished run that must not be overwritten)."""


def is_main_process() -> bool:
    """Under ``accelerate launch`` / torchrun only rank 0 writes the run folder."""
    return int(os.environ.get("RANK", "0")) == 0


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def prepare_run_dir(cfg: C.RunConfig, output_dir: str | None, resume: bool) -> Path:
    """The run folder to write into: a new one under runs/, or ``output_dir`` if it is new, queued, or being resumed."""
    if world_size() > 1:
        if not output_dir:
            raise RunDirError("with several processes (accelerate launch / torchrun) pass --output-dir so all agree on the run folder")
        path = Path(output_dir).expanduser().resolve()
        path.mkdir(parents=True, exist_ok=True)
        return path
    if not output_dir:
        if resume:
            raise RunDirError("--resume needs the run folder: pass --output-dir RUN (or the run's own config.yaml)")
        return rundir.new_run_dir(runs_dir(cfg.output.runs_dir), cfg.output.run_name)
    path = Path(output_dir).expanduser().resolve()
    status = rundir.effective_status(path) if path.is_dir() else {}
    state = status.get("state")
    if state == "running":
        raise RunDirError(f"{path}: a run is already active in this folder (pid {status.get('pid')})")
    if resume:
        if not path.is_dir():
            raise RunDirError(f"{path}: no such run folder to resume")
        return path
    if path.is_dir() and state not in (None, "queued") and any(path.iterdir()):
        raise RunDirError(f"{path}: already holds a {state} run; use --resume to continue it or choose another folder")
    if path.is_dir() and state is None and (path / rundir.METRICS).exists():
        raise RunDirError(f"{path}: already holds training output; choose another folder")
    path.mkdir(parents=True, exist_ok=True)
    return path


class _Tee:
    """Write to the terminal and to train.log, so the UI can show what a CLI user would see."""

    def __init__(self, stream, log_file):
        self.stream, self.log_file = stream, log_file

    def write(self, text):
        try:
            self.stream.write(text)
        except (ValueError, OSError):  # the terminal went away; the log is what matters
            pass
        self.log_file.write(text)
        self.log_file.flush()
        return len(text)

    def flush(self):
        for s in (self.stream, self.log_file):
            try:
                s.flush()
            except (ValueError, OSError):
                pass

    def isatty(self):
        return False

    def fileno(self):
        return self.stream.fileno()


def run(cfg: C.RunConfig, run_dir: Path, resume: bool = False, command: list[str] | None = None) -> int:
    """Train; returns the process exit code (0 finished or aborted gracefully, 1 failed)."""
    from studio.engine.train.callbacks import RunFolderCallback, StopFlag

    run_dir = Path(run_dir)
    if not is_main_process():
        return _run_worker(cfg, run_dir, resume)
    if not resume or not (run_dir / rundir.CONFIG).exists():
        C.save(cfg, run_dir / rundir.CONFIG)
    if command:
        (run_dir / rundir.COMMAND).write_text(" ".join(_quote(a) for a in command) + "\n", encoding="utf-8")
    (run_dir / rundir.STOP).unlink(missing_ok=True)
    stop = StopFlag(run_dir)
    stop.install_signal_handlers()
    meta = {"name": cfg.output.run_name or run_dir.name, "stage": cfg.method.stage, "finetuning_type": cfg.method.finetuning_type,
            "model": cfg.model.name_or_path, **child.stamp(os.getpid()), "started_at": time.time(), "ended_at": None,
            "exit_code": None, "error": None}
    rundir.write_status(run_dir, state="running", resumed=resume, world_size=world_size(), **meta)
    log_file = open(run_dir / rundir.LOG, "a", encoding="utf-8")
    old = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = _Tee(old[0], log_file), _Tee(old[1], log_file)
    try:
        print(f"run folder: {run_dir}")
        callback = RunFolderCallback(run_dir, stop)
        result = _dispatch(cfg, run_dir, resume, callback)
        state = "aborted" if callback.aborted else "finished"
        rundir.write_status(run_dir, state=state, exit_code=0, ended_at=time.time(), stop_reason=stop.reason or None, **result)
        print(f"{state}: {result.get('output')}")
        return 0
    except BaseException as exc:  # every failure must end in status.json, KeyboardInterrupt included
        if isinstance(exc, user_errors()):  # the user can fix these: the message says what, a traceback would bury it
            print(f"error: {exc}", file=sys.stderr)
            message = str(exc)
        else:
            traceback.print_exc()
            message = "".join(traceback.format_exception_only(type(exc), exc)).strip()
        rundir.write_status(run_dir, state="failed", exit_code=1, ended_at=time.time(), error=message[-2000:])
        return 1
    finally:
        sys.stdout, sys.stderr = old
        log_file.close()


def user_errors() -> tuple[type[BaseException], ...]:
    from studio.engine.data.load import DataError
    from studio.engine.models import ModelLoadError

    return (C.ConfigError, DataError, ModelLoadError, RunDirError, FileNotFoundError)


def _run_worker(cfg: C.RunConfig, run_dir: Path, resume: bool) -> int:
    """A non-zero rank: trains in lock-step with rank 0 but writes nothing to the run folder."""
    from studio.engine.train.callbacks import RunFolderCallback, StopFlag

    stop = StopFlag(run_dir)
    stop.install_signal_handlers()
    try:
        _dispatch(cfg, run_dir, resume, RunFolderCallback(run_dir, stop))
        return 0
    except Exception:
        traceback.print_exc()
        return 1


def _dispatch(cfg: C.RunConfig, run_dir: Path, resume: bool, callback) -> dict:
    with _reporting_env(cfg, run_dir):
        return _dispatch_stage(cfg, run_dir, resume, callback)


@contextlib.contextmanager
def _reporting_env(cfg: C.RunConfig, run_dir: Path):
    """TensorBoard / trackio files in the run folder (unless the user's environment names a place), for this run only."""
    from studio.engine.train.common import reporting_env

    added = {k: v for k, v in reporting_env(cfg, run_dir).items() if k not in os.environ}
    os.environ.update(added)
    try:
        yield
    finally:
        for key in added:
            os.environ.pop(key, None)


def _dispatch_stage(cfg: C.RunConfig, run_dir: Path, resume: bool, callback) -> dict:
    extra_specs: list[str] = []
    if cfg.identity.name_en.strip():
        from studio.engine.selfcog import identity

        extra_specs = identity.build_datasets(cfg, run_dir)
    if cfg.method.stage in ("sft", "pt"):  # pt: the SFT path on packed plain text
        from studio.engine.train import sft

        result = sft.train(cfg, run_dir, resume, callback, extra_specs)
    elif cfg.method.stage == "rm":
        from studio.engine.train import reward_model

        result = reward_model.train(cfg, run_dir, resume, callback)
    elif cfg.method.stage in ("dpo", "kto"):
        from studio.engine.train import dpo

        result = dpo.train(cfg, run_dir, resume, callback)
    elif cfg.method.stage == "ppo":
        from studio.engine.train import ppo

        result = ppo.train(cfg, run_dir, resume, callback)
    elif cfg.method.stage in ("grpo", "rloo"):
        from studio.engine.train import grpo

        result = grpo.train(cfg, run_dir, resume, callback)
    else:  # validate() refuses unknown stages before anything heavy starts; this is a guard for direct callers
        raise C.ConfigError(f"method.stage={cfg.method.stage!r} is not available")
    if cfg.identity.name_en.strip() and cfg.identity.probe and not callback.aborted and is_main_process():
        from studio.engine.selfcog import probe

        report = probe.run_probes(cfg, run_dir)  # the full table is in probe.json; status keeps the scores
        result["probe"] = {k: v for k, v in report.items() if k != "rows"} if isinstance(report, dict) else report
    return result


def _quote(arg: str) -> str:
    import shlex

    return shlex.quote(str(arg))
