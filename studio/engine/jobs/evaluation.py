"""Evaluations as background processes: the UI starts ``python -m studio eval ... --out DIR`` (the same command a user can
type), and reads DIR's progress.json / results.json / eval.log while it runs. Nothing lives in the UI process, so a page
reload re-attaches by reading the folder; stopping sends SIGTERM to the child's process group (the predictions written
so far stay, and the next run into the same folder resumes from them).

Pure standard library: importing this module never imports torch.
"""

from __future__ import annotations

import os
import shlex
import signal
import sys
import time
from pathlib import Path

from studio.engine.access import Access
from studio.engine.evaluate import predict as evaluate
from studio.engine.evaluate.predict import LOG, PROGRESS, read_progress, read_results
from studio.engine.jobs import child
from studio.paths import studio_home

JOB = "job.json"  # {pid, argv, started_at}: written by whoever started the child


def eval_argv(out_dir: str | Path, model: str = "default", adapter: str = "", data: str = "", split: str = "",
              metrics: str = "em,f1,rougeL,bleu", custom_metrics: list[str] = (), compare: bool = False,
              max_new_tokens: int = 128, temperature: float = 0.0, batch_size: int = 8, system: str = "",
              lm_eval: str = "", lm_eval_limit: float | None = None, python: str = sys.executable, *,
              access: Access) -> list[str]:
    """The ``studio eval`` command line for these choices (argv list, never a shell string; every value as
    ``--opt=value``, so a value starting with '-' stays a value). ``access`` checks each path and code option."""
    model = access.model(model or "default", "model")
    if adapter:
        adapter = str(access.path(adapter, "adapter"))
    argv = [python, "-m", "studio", "eval", f"--model={model}", f"--out={access.path(out_dir, 'output folder')}"]
    if adapter:
        argv.append(f"--adapter={adapter}")
    if data:
        argv.append(f"--data={access.spec(data, 'data')}")
    if split:
        argv.append(f"--split={split}")
    if not lm_eval or data or split:
        argv += [f"--metrics={metrics}", f"--max-new-tokens={int(max_new_tokens)}", f"--temperature={float(temperature)}",
                 f"--batch-size={int(batch_size)}"]
        argv += [f"--custom-metric={access.metric(c)}" for c in custom_metrics]
        if system:
            argv.append(f"--system={system}")
    if compare:
        argv.append("--compare")
    if lm_eval:
        argv.append(f"--lm-eval={lm_eval}")
        if lm_eval_limit:
            argv.append(f"--lm-eval-limit={lm_eval_limit}")
    return argv


def shown_command(argv: list[str]) -> str:
    """The argv as the ``studio eval ...`` line a user would type."""
    return shlex.join(["studio", *argv[3:]])


def default_out_dir(adapter: str = "", data: str = "", split: str = "") -> Path:
    """RUN/eval/<rows> for a run (or its adapter/ / merged/ folder), else a fresh $STUDIO_HOME/evals/<time> folder."""
    return evaluate.default_out_dir(adapter, data, split) or studio_home() / "evals" / time.strftime("%Y%m%d-%H%M%S")


def start(argv: list[str], out_dir: str | Path, *, access: Access) -> int:
    """Start the child (its own session, output into DIR/eval.log); refuses a folder another evaluation is writing."""
    out = access.path(out_dir, "output folder")
    if status(out, access=access).get("state") == "running":
        raise RuntimeError(f"{out}: an evaluation is already running in this folder")
    out.mkdir(parents=True, exist_ok=True)
    (out / PROGRESS).unlink(missing_ok=True)  # the previous job's final state must not show as this one's
    with open(out / LOG, "ab") as log:
        log.write(f"$ {shlex.join(argv)}\n".encode())
        log.flush()
        proc = child.spawn(argv, log)
    child.write_json(out / JOB, {**child.stamp(proc.pid), "argv": argv, "started_at": time.time()})
    return proc.pid


def stop(out_dir: str | Path, *, access: Access) -> bool:
    """SIGTERM the evaluation writing into ``out_dir``; False when none is running."""
    out_dir = access.path(out_dir, "output folder")
    job = _job(out_dir)
    if status(out_dir, access=access).get("state") != "running":  # finished (maybe still exiting), failed or stopped already
        return False
    if not child.signal_group(job, signal.SIGTERM, "eval"):  # only that very process: never a reused pid
        return False
    child.write_json(Path(out_dir) / JOB, dict(job, stopped_at=time.time()))
    return True


def wait(out_dir: str | Path, timeout: float | None = None, poll_s: float = 0.3, *, access: Access) -> dict:
    """Block until the evaluation writing into ``out_dir`` is no longer running (or ``timeout`` passes); its status."""
    end = None if timeout is None else time.time() + timeout
    while True:
        pid = _job(out_dir).get("pid")
        try:  # reap our own child, so it does not linger as a zombie (a foreign pid raises ChildProcessError)
            if pid:
                os.waitpid(int(pid), os.WNOHANG)
        except (ChildProcessError, OSError):
            pass
        info = status(out_dir, access=access)
        if info.get("state") != "running" or (end is not None and time.time() >= end):
            return info
        time.sleep(poll_s)


def error_of(out_dir: str | Path, info: dict) -> str:
    """Why an evaluation ended without results: the error it recorded, else the ``studio eval: ...`` line it printed."""
    if info.get("error"):
        return str(info["error"])
    lines = log_tail(out_dir, 40).splitlines()
    said = [ln for ln in lines if ln.startswith("studio eval: ")]
    return said[-1][len("studio eval: "):] if said else (lines[-1] if lines else "the evaluation ended without results")


def _job(out_dir: str | Path) -> dict:
    return child.read_json(Path(out_dir) / JOB) or {}


def status(out_dir: str | Path, *, access: Access) -> dict:
    """progress.json corrected by the process's fate: running / finished / failed / stopped, plus the log tail."""
    out = access.path(out_dir, "output folder")
    job, prog = _job(out), read_progress(out)
    alive = child.is_job(job, "eval")
    state = prog.get("state") or ("running" if alive else "")
    if state == "running" and not alive and job:
        state = "stopped" if job.get("stopped_at") else "failed"
    elif alive and state != "finished":
        state = "running"
    info = dict(prog, state=state, pid=job.get("pid"), argv=job.get("argv"))
    if state in ("failed", "stopped"):
        info["log_tail"] = log_tail(out)
    return info


def log_tail(out_dir: str | Path, lines: int = 15) -> str:
    return "\n".join(child.tail_lines(Path(out_dir) / LOG, lines, 32 * 1024))


def results(out_dir: str | Path, *, access: Access) -> dict | None:
    return read_results(access.path(out_dir, "output folder"))
