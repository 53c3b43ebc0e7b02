"""The run folder: the one record of a training run, shared by the trainer (writer) and the UI (reader).

Layout of ``$STUDIO_HOME/runs/<id>/``::

    config.yaml      the resolved RunConfig the run used (re-runnable: ``studio train config.yaml``)
    command.txt      the exact command line that started it
    status.json      {"state": queued|running|finished|failed|aborted, "pid", "exit_code", "step", "max_steps", ...}
    metrics.jsonl    one JSON object per logging step (step, epoch, loss, lr, grad_norm, tokens_per_s, elapsed, eta, ...);
                     eval lines carry eval_loss; the trainer appends, readers never write
    train.log        everything the run printed
    data_report.json rows per dataset, truncated / skipped counts
    checkpoints/     checkpoint-<step>/ folders (resume, best model)
    adapter/         the final LoRA adapter (lora/qlora), or model/ the final weights (full/freeze)
    STOP             created by anyone who wants the run to stop; the trainer checks it after every step

Pure standard library: the UI process reads run folders without importing torch.
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

CONFIG = "config.yaml"
COMMAND = "command.txt"
STATUS = "status.json"
METRICS = "metrics.jsonl"
LOG = "train.log"
DATA_REPORT = "data_report.json"
STOP = "STOP"
CHECKPOINTS = "checkpoints"
ADAPTER = "adapter"
MODEL = "model"

STATES = ("queued", "running", "finished", "failed", "aborted")
ACTIVE_STATES = ("queued", "running")


def new_run_dir(runs_root: Path, name: str = "") -> Path:
    """A fresh, unique run folder ``YYYYmmdd-HHMMSS[-name]``; never reuses an existing one."""
    runs_root.mkdir(parents=True, exist_ok=True)
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-.")[:40]
    base = time.strftime("%Y%m%d-%H%M%S") + (f"-{slug}" if slug else "")
    for i in range(1000):
        path = runs_root / (base if i == 0 else f"{base}-{i}")
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue
    raise RuntimeError(f"cannot create a run folder under {runs_root}")


def atomic_write_text(path: Path, text: str) -> None:
    """Write to a temp file, fsync, rename: a reader never sees half a file and a crash keeps the old one."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def read_status(run_dir: Path) -> dict:
    try:
        return json.loads((Path(run_dir) / STATUS).read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def write_status(run_dir: Path, **fields) -> dict:
    """Merge ``fields`` into status.json (atomically) and return the new status."""
    status = read_status(run_dir)
    status.update(fields)
    status["updated_at"] = time.time()
    atomic_write_text(Path(run_dir) / STATUS, json.dumps(status, indent=2, ensure_ascii=False))
    return status


def append_metrics(run_dir: Path, record: dict) -> None:
    with open(Path(run_dir) / METRICS, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(record, ensure_ascii=False) + "\n")


def read_metrics(run_dir: Path) -> list[dict]:
    """Every complete metrics line; a half-written last line (the trainer is appending) is ignored."""
    path = Path(run_dir) / METRICS
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


def tail_log(run_dir: Path, lines: int = 40) -> str:
    path = Path(run_dir) / LOG
    if not path.is_file():
        return ""
    with open(path, "rb") as fh:
        fh.seek(0, os.SEEK_END)
        size = fh.tell()
        fh.seek(max(0, size - 64 * 1024))
        text = fh.read().decode("utf-8", errors="replace")
    # progress bars rewrite one line with carriage returns: keep only the last state of each line
    cleaned = [ln.rsplit("\r", 1)[-1] for ln in text.splitlines()]
    return "\n".join(cleaned[-lines:])


def pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie child of this process is dead too
        with open(f"/proc/{int(pid)}/stat", encoding="utf-8") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


def effective_status(run_dir: Path) -> dict:
    """status.json, corrected when it says running but its process is gone (killed, machine restarted)."""
    status = read_status(run_dir)
    if status.get("state") == "running" and not pid_alive(status.get("pid")):
        status = dict(status, state="failed", exit_code=status.get("exit_code"),
                      error=status.get("error") or "the training process ended without reporting (killed?)")
    return status


def request_stop(run_dir: Path) -> None:
    (Path(run_dir) / STOP).write_text(time.strftime("%Y-%m-%d %H:%M:%S"), encoding="utf-8")


@dataclass
class RunInfo:
    run_id: str
    path: Path
    state: str
    name: str = ""
    stage: str = ""
    finetuning_type: str = ""
    step: int = 0
    max_steps: int = 0
    started_at: float | None = None
    ended_at: float | None = None
    exit_code: int | None = None
    final_loss: float | None = None
    output: str = ""
    extra: dict = field(default_factory=dict)


def list_runs(runs_root: Path) -> list[RunInfo]:
    """Every run folder under ``runs_root``, newest first."""
    root = Path(runs_root)
    if not root.is_dir():
        return []
    infos = []
    for path in root.iterdir():
        if not path.is_dir() or not (path / STATUS).is_file() and not (path / CONFIG).is_file():
            continue
        st = effective_status(path)
        infos.append(RunInfo(run_id=path.name, path=path, state=st.get("state", "unknown"), name=st.get("name", ""),
                             stage=st.get("stage", ""), finetuning_type=st.get("finetuning_type", ""),
                             step=int(st.get("step") or 0), max_steps=int(st.get("max_steps") or 0),
                             started_at=st.get("started_at"), ended_at=st.get("ended_at"), exit_code=st.get("exit_code"),
                             final_loss=st.get("final_loss"), output=st.get("output", ""), extra=st))
    infos.sort(key=lambda r: (r.started_at or r.path.stat().st_mtime, r.run_id), reverse=True)
    return infos
