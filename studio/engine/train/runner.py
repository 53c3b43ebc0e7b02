"""One training run from start to finish: pick the run folder, record config and command, tee the output into train.log,
keep status.json true (running -> finished | failed | aborted), dispatch to the method module.

``python -m studio.train`` and ``studio train`` both end here; the UI starts that same command as a child process.
"""

from __future__ import annotations

import errno
import contextlib
import os
import shutil
import sys
import time
import traceback
from pathlib import Path

from studio import allocator
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
        self.log_failed = False

    def write(self, text):
        try:
            self.stream.write(text)
        except (ValueError, OSError):  # the terminal went away; the log is what matters
            pass
        try:
            self.log_file.write(text)
            self.log_file.flush()
        except OSError as exc:  # a full disk: printing must not turn into a second failure; the terminal still has it
            if not self.log_failed:
                self.log_failed = True
                try:
                    self.stream.write(f"\n[studio] train.log cannot be written: {exc}\n")
                except (ValueError, OSError):
                    pass
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
    if world_size() > 1:
        child.die_with_parent()  # the launcher gone (killed), no Stop would reach this rank any more
    if not is_main_process():
        return _run_worker(cfg, run_dir, resume)
    if not resume or not (run_dir / rundir.CONFIG).exists():
        C.save(cfg, run_dir / rundir.CONFIG)
    if command and not (world_size() > 1 and (run_dir / rundir.COMMAND).exists()):  # keep the launcher's own command
        (run_dir / rundir.COMMAND).write_text(" ".join(_quote(a) for a in command) + "\n", encoding="utf-8")
    (run_dir / rundir.STOP).unlink(missing_ok=True)
    stop = StopFlag(run_dir)
    stop.install_signal_handlers()
    meta = {"name": cfg.output.run_name or run_dir.name, "stage": cfg.method.stage, "finetuning_type": cfg.method.finetuning_type,
            "model": cfg.model.name_or_path, **child.stamp(os.getpid()), "started_at": time.time(), "ended_at": None,
            "exit_code": None, "error": None}
    # with several processes, the launcher (accelerate launch / torchrun: this rank's parent) holds the group: Stop,
    # status and re-attach follow it (rundir.job_record)
    group = dict(launcher=child.stamp(os.getppid()), num_machines=cfg.distributed.num_machines,
                 backend=cfg.distributed.backend) if world_size() > 1 else dict(launcher=None)
    rundir.write_status(run_dir, state="running", resumed=resume, world_size=world_size(), **meta, **group)
    log_file = open(run_dir / rundir.LOG, "a", encoding="utf-8")
    old = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = _Tee(old[0], log_file), _Tee(old[1], log_file)
    callback = None
    try:
        print(f"run folder: {run_dir}")
        if allocator.describe():  # a process setting (studio/allocator.py): every method's run gets it
            print(allocator.describe())
        callback = RunFolderCallback(run_dir, stop)
        result = _dispatch(cfg, run_dir, resume, callback)
        result.update(peak_memory())
        print(f"peak memory: {memory_text(result)}")
        state = "aborted" if callback.aborted else "finished"
        rundir.write_status(run_dir, state=state, exit_code=0, ended_at=time.time(), stop_reason=stop.reason or None, **result)
        print(f"{state}: {result.get('output')}")
        return 0
    except BaseException as exc:  # every failure must end in status.json, KeyboardInterrupt included
        user = isinstance(exc, user_errors())  # the user can fix these: the message says what, a traceback would bury it
        if not user:
            traceback.print_exc()
        try:
            full = disk_full_message(exc, run_dir, callback.saving_step if callback else None)
        except Exception:  # naming the failure must never become a second one
            full = None
        message = full or (str(exc) if user else "".join(traceback.format_exception_only(type(exc), exc)).strip())
        if full or user:
            print(f"error: {message}", file=sys.stderr)
        _record_failure(run_dir, message)
        return 1
    finally:
        sys.stdout, sys.stderr = old
        try:
            log_file.close()
        except OSError:  # what a full disk refused is in the terminal (stdout.log under the studio) instead
            pass


def _record_failure(run_dir: Path, message: str) -> None:
    try:
        rundir.write_status(run_dir, state="failed", exit_code=1, ended_at=time.time(), error=message[-2000:])
    except OSError as exc:  # a full disk may refuse even this; the studio then reports the run as ended without a word
        print(f"error: could not record the failure in {run_dir / rundir.STATUS}: {exc}", file=sys.stderr)


LOW_SPACE_BYTES = 1 << 20  # a checkpoint save that fails with less than this left on its disk failed for want of space


def disk_full(exc: BaseException, path: Path | None = None) -> bool:
    """The error of a full disk: ENOSPC/EDQUOT anywhere in the exception chain, or the words libraries put in their own
    errors (safetensors: "No space left on device (os error 28)"); with ``path``, also any error while that disk has
    almost nothing left (torch.save hides ENOSPC behind "unexpected pos ...")."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if any(words in str(seen) for words in ("No space left on device", "os error 28", "Disk quota exceeded")):
            return True
        seen = seen.__cause__ or seen.__context__
    if path is None or not isinstance(exc, Exception):
        return False
    try:
        return shutil.disk_usage(path).free < LOW_SPACE_BYTES
    except OSError:
        return False


def disk_full_message(exc: BaseException, run_dir: Path, saving_step: int | None) -> str | None:
    """"disk full while saving checkpoint ..." (or "... while writing FILE") with what the user can do, or None when
    ``exc`` is not a full disk. A checkpoint the failed save left half written is removed, to give status.json room."""
    from studio.engine.train import common

    folder = run_dir / rundir.CHECKPOINTS / f"checkpoint-{saving_step}" if saving_step is not None else None
    if not disk_full(exc, folder.parent if folder is not None and folder.parent.is_dir() else None):
        return None
    removed = ""
    if folder is not None and folder.is_dir() and common.checkpoint_problem(folder) is not None:
        shutil.rmtree(folder, ignore_errors=True)
        removed = " (its partial folder was removed to free space)"
    previous = common.latest_checkpoint(run_dir, log=lambda _msg: None)
    then = (f"the last complete checkpoint, {previous.name}, is kept: free some space, then continue with "
            f"`studio train {run_dir / rundir.CONFIG} --resume`" if previous else
            "there is no complete checkpoint yet: free some space, then start the run again")
    what = f"saving checkpoint {folder}{removed}" if folder else f"writing {getattr(exc, 'filename', None) or run_dir}"
    return f"disk full while {what}: {_short_error(exc)}; {then}"


def _short_error(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:300] if text else ''}"


def peak_memory() -> dict:
    """This process's peak resident memory, and the GPU's peak allocation when one was used (bytes)."""
    import resource

    out = {"peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
        out["peak_gpu_bytes"] = int(torch.cuda.max_memory_allocated())
    return out


def memory_text(mem: dict) -> str:
    text = f"RSS {mem['peak_rss_bytes'] / 2**30:.2f} GiB"
    return text + (f", GPU {mem['peak_gpu_bytes'] / 2**30:.2f} GiB" if mem.get("peak_gpu_bytes") else "")


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

        result["train_peak_rss_bytes"] = peak_memory()["peak_rss_bytes"]  # training's own peak (the plan scales it)

        report = probe.run_probes(cfg, run_dir)  # the full table is in probe.json; status keeps the scores
        result["probe"] = {k: v for k, v in report.items() if k != "rows"} if isinstance(report, dict) else report
    return result


def _quote(arg: str) -> str:
    import shlex

    return shlex.quote(str(arg))
