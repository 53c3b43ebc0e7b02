"""The run folder: the one record of a training run, shared by the trainer (writer) and the UI (reader).

Layout of ``$STUDIO_HOME/runs/<id>/``::

    config.yaml      the resolved RunConfig the run used (re-runnable: ``studio train config.yaml``)
    accelerate.yaml  with several processes: the accelerate config the run was launched with (jobs/distributed.py)
    command.txt      the exact command line that started it
    status.json      {"state": queued|running|finished|failed|aborted, "pid", "exit_code", "step", "max_steps", ...}
    metrics.jsonl    one JSON object per logging step (step, epoch, loss, lr, grad_norm, tokens_per_s, elapsed, eta, ...);
                     eval lines carry eval_loss; the trainer appends, readers never write
    metrics.superseded.jsonl  lines a resumed run took out of metrics.jsonl: steps after the checkpoint it resumed
                     from (trained again), and any broken line (a killed or disk-full write)
    train.log        everything the run printed
    data_report.json rows per dataset, truncated / skipped counts
    checkpoints/     checkpoint-<step>/ folders (resume, best model)
    adapter/         the final LoRA adapter (lora/qlora), or model/ the final weights (full/freeze)
    STOP             created by anyone who wants the run to stop; the trainer checks it after every step
    tensorboard/     TensorBoard event files (training.report_to: tensorboard); trackio/ trackio's database (trackio)

Pure standard library: the UI process reads run folders without importing torch.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

from studio.engine.jobs import child
from studio.engine.jobs.child import atomic_write_text  # the run folder's writers use it (re-exported)

CONFIG = "config.yaml"
COMMAND = "command.txt"
STATUS = "status.json"
METRICS = "metrics.jsonl"
SUPERSEDED_METRICS = "metrics.superseded.jsonl"
LOG = "train.log"
DATA_REPORT = "data_report.json"
STOP = "STOP"
CHILD_OUTPUT = "stdout.log"  # what the child printed before (or besides) its own train.log: an import crash lands here
CHECKPOINTS = "checkpoints"
TENSORBOARD = "tensorboard"  # event files when training.report_to names tensorboard
TRACKIO = "trackio"  # trackio's database when training.report_to names trackio
ADAPTER = "adapter"
MODEL = "model"

STATES = ("queued", "running", "finished", "failed", "aborted", "unreadable")
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


def read_status(run_dir: Path) -> dict:
    """status.json as a dict; {} when it is missing, and {"state": "unreadable", ...} when it is corrupt (half a file
    from a full disk, or edited by hand): that run is shown as unreadable, every other run as usual."""
    path = Path(run_dir) / STATUS
    if not path.is_file():
        return {}
    data = child.read_json(path)
    if data is None:
        return {"state": "unreadable", "error": f"{path}: not a JSON object (corrupt or edited?)"}
    return data


def write_status(run_dir: Path, **fields) -> dict:
    """Merge ``fields`` into status.json (atomically) and return the new status."""
    status = read_status(run_dir)
    if status.get("state") == "unreadable":  # a corrupt file is replaced, not merged into
        status = {}
    status.update(fields)
    status["updated_at"] = time.time()
    child.write_json(Path(run_dir) / STATUS, status)
    return status


def append_metrics(run_dir: Path, record: dict) -> None:
    with open(Path(run_dir) / METRICS, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(record, ensure_ascii=False) + "\n")


def supersede_metrics_after(run_dir: Path, step: int) -> int:
    """Before a run resumes at ``step``: move the lines of later steps (the interrupted attempt logged them, then died
    before a checkpoint kept them; they are trained again) and any broken line out of metrics.jsonl, into
    metrics.superseded.jsonl. The curve then has each step once, in order; no line is thrown away. Returns how many moved."""
    path = Path(run_dir) / METRICS
    if not path.is_file():
        return 0
    text = path.read_text(encoding="utf-8")
    keep, moved = [], []
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            record = None  # half a line from a killed or disk-full write
        logged = record.get("step") if isinstance(record, dict) else None
        (moved if record is None or (isinstance(logged, int) and logged > step) else keep).append(line)
    if moved:
        with open(Path(run_dir) / SUPERSEDED_METRICS, "a", encoding="utf-8") as fh:
            fh.write("".join(f"{line}\n" for line in moved))
    if moved or not text.endswith("\n"):
        atomic_write_text(path, "".join(f"{line}\n" for line in keep))
    return len(moved)


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
    """The last non-blank lines of train.log (what the child printed before its log existed: ``stdout.log``)."""
    for name in (LOG, CHILD_OUTPUT):
        found = child.tail_lines(Path(run_dir) / name, lines)
        if found:
            return "\n".join(found)
    return ""


def job_record(status: dict) -> dict:
    """The stamp of the process that holds the whole run: the launcher (``accelerate launch``) of a run of several
    processes, which rank 0 records as ``launcher``; the trainer itself otherwise."""
    launcher = status.get("launcher")
    return launcher if isinstance(launcher, dict) and launcher.get("pid") else status


def trainer_alive(run_dir: Path, status: dict | None = None) -> bool:
    """The run's training process (or its launcher) is still the one status.json names (pid, start time; see
    jobs/child.py)."""
    status = read_status(run_dir) if status is None else status
    return child.is_job(job_record(status), str(Path(run_dir).name))


def effective_status(run_dir: Path) -> dict:
    """status.json, corrected when it says running but its process is gone (killed, machine restarted)."""
    status = read_status(run_dir)
    if status.get("state") == "running" and not trainer_alive(run_dir, status):
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


def _int(value) -> int:
    try:
        return int(value or 0)
    except (TypeError, ValueError, OverflowError):
        return 0


def _time(value) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def list_runs(runs_root: Path) -> list[RunInfo]:
    """Every run folder under ``runs_root``, newest first. A run whose status.json is corrupt or holds odd values is
    listed (state "unreadable", or the values it could read); it never hides the others."""
    root = Path(runs_root)
    if not root.is_dir():
        return []
    infos = []
    for path in root.iterdir():
        if not path.is_dir() or not (path / STATUS).is_file() and not (path / CONFIG).is_file():
            continue
        st = effective_status(path)
        text = {k: st.get(k) if isinstance(st.get(k), str) else "" for k in ("state", "name", "stage", "finetuning_type",
                                                                              "output")}
        code = st.get("exit_code")
        loss = st.get("final_loss")
        infos.append(RunInfo(run_id=path.name, path=path, state=text["state"] or "unknown", name=text["name"],
                             stage=text["stage"], finetuning_type=text["finetuning_type"], step=_int(st.get("step")),
                             max_steps=_int(st.get("max_steps")), started_at=_time(st.get("started_at")),
                             ended_at=_time(st.get("ended_at")), exit_code=code if isinstance(code, int) else None,
                             final_loss=loss if isinstance(loss, (int, float)) else None, output=text["output"], extra=st))
    infos.sort(key=lambda r: (r.started_at or r.path.stat().st_mtime, r.run_id), reverse=True)
    return infos
