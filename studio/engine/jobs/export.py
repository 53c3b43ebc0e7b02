"""Run ``studio export`` as a background child process for the Export tab (and the ``/export`` API): the exact command a
user can type, built from plain choices; its progress lines and its JSON result read back as plain data.

    req = ExportRequest(sources=["runs/A"], out_dir="exports/A", gguf=["q8_0"])
    shell_command(req)        # 'studio export --adapter runs/A --out exports/A --gguf q8_0'
    job = ExportJob.start(req)
    job.wait()["result"]      # the dict studio.engine.export.merge returns (out_dir, size_bytes, verification, gguf, ...)

The merge loads the base model twice (adapter model, then the saved folder to check it); in a child that memory is
returned when it ends, and the UI process never imports torch for an export. Pure standard library.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from studio.engine.access import Access
from studio.engine.jobs import child
from studio.paths import exports_dir

PROGRESS_LINE = re.compile(r"^\[\s*(\d+)%\]\s*(.*)$")  # what studio.commands.export prints to stderr


@dataclass
class ExportRequest:
    """One export, as the CLI's options. ``weights`` None = a plain merge of one source (no weighted combination)."""

    sources: list[str]
    out_dir: str
    weights: list[float] | None = None
    combine: str = "cat"
    density: float = 0.5
    output: str = "model"  # 'model' (merged) or 'adapter' (combined LoRA, weighted merges only)
    dtype: str = "float32"
    gguf: list[str] = field(default_factory=list)
    overwrite: bool = False
    base: str = ""


def check_request(req: ExportRequest, access: Access) -> None:
    """Every path of a request passes ``access`` (a request built by hand, not by ``build_request``, too)."""
    req.sources = [str(access.path(s, "export source")) for s in req.sources]
    req.out_dir = str(access.path(req.out_dir, "export folder"))
    if req.base:
        req.base = access.model(req.base, "base model")


def cli_args(req: ExportRequest) -> list[str]:
    """``export --adapter=... --out=...``: only the options that differ from the CLI's defaults, each as ``--opt=value``
    (a value starting with '-', such as a negative weight, stays a value)."""
    args = ["export", *(f"--adapter={src}" for src in req.sources), f"--out={req.out_dir}"]
    if req.weights is not None:
        args.append("--weights=" + ",".join(f"{w:g}" for w in req.weights))
        if req.combine != "cat":
            args.append(f"--combine={req.combine}")
        if req.combine.startswith(("ties", "dare", "magnitude")) and req.density != 0.5:
            args.append(f"--density={req.density:g}")
        if req.output != "model":
            args.append(f"--as={req.output}")
    if req.dtype != "float32":
        args.append(f"--dtype={req.dtype}")
    if req.gguf:
        args.append("--gguf=" + ",".join(req.gguf))
    if req.base:
        args.append(f"--base={req.base}")
    if req.overwrite:
        args.append("--overwrite")
    return args


def shell_command(req: ExportRequest) -> str:
    """The command to type in a shell for the same export."""
    return shlex.join(["studio", *cli_args(req)])


def child_argv(req: ExportRequest, python: str = sys.executable) -> list[str]:
    """What the studio starts: the same command through ``python -m studio``, with a JSON result on stdout."""
    return [python, "-m", "studio", *cli_args(req), "--json"]


def default_out_dir(names: list[str]) -> str:
    """``$STUDIO_HOME/exports/<name>`` (``<first>-combined-<n>`` for several sources)."""
    if not names:
        return ""
    name = names[0] if len(names) == 1 else f"{names[0]}-combined-{len(names)}"
    return str(exports_dir() / name)


def occupied(out_dir: str) -> bool:
    """True when ``out_dir`` exists and is not an empty folder (an export there needs overwrite)."""
    p = Path(out_dir).expanduser()
    return p.exists() and (not p.is_dir() or any(p.iterdir()))


class RequestError(ValueError):
    """A form or API request that cannot become an export; ``key``/``params`` let a UI say it in its own language."""

    def __init__(self, message: str, key: str, **params):
        super().__init__(message)
        self.key, self.params = key, params


MERGED = "merged"  # a run's default merge folder: RUN/merged


def build_request(sources: list[str] | str, weights: str | list[float] | None = "", combine: str = "cat",
                  density: float = 0.5, output: str = "model", out_dir: str = "", dtype: str = "float32",
                  gguf: list[str] | None = None, overwrite: bool = False, check_out: bool = True, *,
                  access: Access) -> ExportRequest:
    """The export a form or an API call describes, checked as far as possible without a model; raises RequestError
    (and AccessError for a path the caller may not use). ``sources`` is a list or one folder per line; ``weights`` a list
    or comma-separated text (empty: a plain merge); ``check_out`` also refuses a non-empty output folder unless
    ``overwrite``."""
    folders = [s.strip() for s in (sources.splitlines() if isinstance(sources, str) else sources or []) if str(s).strip()]
    if not folders:
        raise RequestError("pick a run or give an adapter folder", "export.pick")
    folders = [str(access.path(f, "export source")) for f in folders]
    parsed = None
    if isinstance(weights, (list, tuple)):
        parsed = [float(w) for w in weights] if weights else None
    elif (weights or "").strip():
        try:
            parsed = [float(w) for w in weights.replace(";", ",").split(",") if w.strip()]
        except ValueError:
            raise RequestError(f"weights {weights!r}: expected comma-separated numbers, e.g. 0.7,0.3", "export.weights_bad",
                               weights=weights) from None
    if (len(folders) > 1 or parsed is not None) and len(parsed or []) != len(folders):
        raise RequestError(f"{len(folders)} folder(s) but {len(parsed or [])} weight(s): give one weight per folder",
                           "export.weights_count", n=len(folders), got=len(parsed or []))
    out = str(access.path((out_dir or "").strip() or default_out_dir([source_name(f) for f in folders]), "export folder"))
    if check_out and occupied(out):
        from studio.engine.export.merge import is_export  # reads two small files; no torch

        if not is_export(Path(out)):  # only an earlier export is ever replaced (the marker file it wrote)
            raise RequestError(f"{out} exists, is not empty and was not made by a studio export: an export never "
                               "replaces it; choose a new or empty folder", "export.not_export", out=out)
        if not overwrite:
            raise RequestError(f"{out} exists and is not empty (an earlier export): pass overwrite to replace it, or "
                               "choose another folder", "export.occupied", out=out)
    return ExportRequest(sources=folders, out_dir=out, weights=parsed, combine=combine or "cat", density=float(density),
                         output=output or "model", dtype=dtype or "float32", gguf=list(gguf or []), overwrite=bool(overwrite))


def source_name(folder: str) -> str:
    """A run folder's id (also for its adapter/ or model/ inside), else the folder's own name."""
    p = Path(folder).expanduser()
    return p.parent.name if (p.parent / "config.yaml").is_file() and not (p / "config.yaml").is_file() else p.name


def merge_request(source: str, out_dir: str = "", dtype: str = "float32", overwrite: bool = False, *,
                  access: Access) -> ExportRequest:
    """A plain merge of one source (the ``/merge`` endpoint): into ``out_dir``, else ``RUN/merged`` for a run folder
    (``<parent>/merged`` for a folder inside one)."""
    src = access.path(source, "export source")
    out = out_dir or (src / MERGED if (src / "config.yaml").is_file() else src.parent / MERGED)
    return build_request([str(src)], None, out_dir=str(out), dtype=dtype, overwrite=overwrite, access=access)


JOB_FILE, ERR_FILE, OUT_FILE, EXIT_FILE, CANCEL_FILE = "job.json", "stderr.log", "stdout.log", "exit", "cancel.json"
RECENT_S = 1800  # a finished export is re-shown after a page reload for this long
KEEP_JOBS = 20
TERM_GRACE_S = 5.0


def jobs_dir() -> Path:
    """``$STUDIO_HOME/exports/.jobs``: one folder per started export (its command, pid, output and exit code)."""
    return exports_dir() / ".jobs"


class ExportJob:
    """One ``studio export`` child whose whole state lives in a job folder, so any process can re-attach to it.

    The child writes its progress lines and JSON result straight into ``stderr.log``/``stdout.log`` there (files, not
    pipes: it keeps running and reporting when the page that started it is gone); a waiter thread of the starting
    process records the exit code in ``exit``. ``ExportJob.attach(folder)`` / ``ExportJob.latest()`` read it back."""

    def __init__(self, folder: Path, process: subprocess.Popen | None = None):
        self.folder, self.process = Path(folder), process
        self.meta = json.loads((self.folder / JOB_FILE).read_text(encoding="utf-8"))
        self.request = ExportRequest(**self.meta["request"])
        self.argv, self.pid, self.started = self.meta["argv"], int(self.meta["pid"]), float(self.meta["started"])

    @classmethod
    def start(cls, request: ExportRequest, python: str = sys.executable, root: Path | None = None, *,
              access: Access) -> "ExportJob":
        """Start the export child; every folder of ``request`` (sources, output, base) must pass ``access``."""
        check_request(request, access)
        argv = child_argv(request, python)
        root = Path(root) if root else jobs_dir()
        _prune(root)
        folder = root / f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}-{time.monotonic_ns() % 10**6:06d}"
        folder.mkdir(parents=True)
        out = Path(request.out_dir).expanduser().resolve()
        # what the export will create: removed again on cancel (a folder the user had is never deleted)
        created = [str(p) for p in (out, *out.parents) if not p.exists()]
        with open(folder / OUT_FILE, "wb") as out_f, open(folder / ERR_FILE, "wb") as err_f:
            process = child.spawn(argv, out_f, err_f)
        meta = {"request": asdict(request), "argv": argv, **child.stamp(process.pid), "started": time.time(),
                "out": str(out), "created": created}
        child.write_json(folder / JOB_FILE, meta)
        job = cls(folder, process)
        threading.Thread(target=job._reap, daemon=True).start()
        return job

    @classmethod
    def attach(cls, folder: str | os.PathLike, root: Path | None = None) -> "ExportJob":
        """The job whose folder this is; only a folder of the jobs root (its job.json names a pid to signal)."""
        path, root = Path(folder).resolve(), (Path(root) if root else jobs_dir()).resolve()
        if path.parent != root:
            raise ValueError(f"{folder}: not an export job folder (they live in {root})")
        return cls(path)

    @classmethod
    def latest(cls, root: Path | None = None, recent_s: float = RECENT_S) -> "ExportJob | None":
        """The newest export still running or ended less than ``recent_s`` ago (what a reloaded page shows again)."""
        for folder in _job_folders(Path(root) if root else jobs_dir()):
            try:
                job = cls(folder)
            except (OSError, ValueError, KeyError, TypeError):
                continue
            if job.running() or time.time() - job.ended_at() < recent_s:
                return job
        return None

    def _reap(self) -> None:
        code = self.process.wait()
        child.atomic_write_text(self.folder / EXIT_FILE, str(code))  # a reader never sees it empty

    def running(self) -> bool:
        if self.process is not None:
            return self.process.poll() is None
        if (self.folder / EXIT_FILE).exists():
            return False
        return child.is_job(self.meta, "studio", "export")

    def ended_at(self) -> float:
        files = [self.folder / n for n in (EXIT_FILE, CANCEL_FILE, ERR_FILE, OUT_FILE)]
        return max((f.stat().st_mtime for f in files if f.exists()), default=self.started)

    def exit_code(self) -> int | None:
        if self.process is not None and self.process.poll() is not None:
            return self.process.returncode
        try:
            return int((self.folder / EXIT_FILE).read_text(encoding="utf-8").strip())
        except (OSError, ValueError):
            return None

    def poll(self) -> dict:
        """{state: running|finished|failed|cancelled, fraction, message, seconds, command, argv, exit_code, result,
        error, log, job}. Never blocks."""
        running = self.running()
        code = None if running else self.exit_code()
        log = child.tail_lines(self.folder / ERR_FILE, 10_000)
        fraction, message = 0.0, "starting"
        for line in log:
            m = PROGRESS_LINE.match(line)
            if m:
                fraction, message = int(m.group(1)) / 100, m.group(2)
        end = time.time() if running else self.ended_at()
        report = {"state": "running", "fraction": fraction, "message": message,
                  "seconds": round(end - self.started, 1), "command": shell_command(self.request), "argv": self.argv,
                  "exit_code": code, "result": None, "error": None, "log": "\n".join(log[-200:]), "job": str(self.folder)}
        if not running:
            report.update(self._outcome(code, log))
        return report

    def _outcome(self, code: int | None, log: list[str]) -> dict:
        cancel = child.read_json(self.folder / CANCEL_FILE)
        if cancel is not None:
            return {"state": "cancelled", "error": cancel.get("message"), "removed": cancel.get("removed", [])}
        parsed = None
        for line in child.tail_lines(self.folder / OUT_FILE, 10_000):
            if line.startswith("{"):
                try:
                    parsed = json.loads(line)
                except ValueError:
                    pass
        # no exit code: the studio that started it was restarted, or its waiter has not written it yet; the JSON
        # result alone tells how it ended
        if code is None:
            code = 0 if parsed is not None and "error" not in parsed else -1
        if code == 0 and parsed is not None:
            return {"state": "finished", "result": parsed, "fraction": 1.0, "exit_code": 0}
        if parsed is not None:  # the CLI's own error report: a one-line reason and the failed check's numbers
            return {"state": "failed", "error": parsed.get("error"), "result": parsed.get("result"), "exit_code": code}
        last = next((ln for ln in reversed(log) if ln.strip()), "")
        return {"state": "failed", "error": f"studio export exited with code {code}" + (f": {last}" if last else "")}

    def wait(self, timeout: float | None = None, interval: float = 0.2) -> dict:
        deadline = None if timeout is None else time.time() + timeout
        while self.running() and (deadline is None or time.time() < deadline):
            time.sleep(interval)
        if self.process is not None and not self.running():
            time.sleep(0.05)  # let the waiter thread record the exit code
        return self.poll()

    def cancel(self, grace_s: float = TERM_GRACE_S) -> dict:
        """Stop the child (SIGTERM to its process group, SIGKILL after ``grace_s``) and remove what it created: its
        hidden work folder, and the output folder (with parents it made) only when it did not exist before.
        Returns {cancelled: bool, removed: [paths]}; an export that already ended is left as it is."""
        if not self.running():
            return {"cancelled": False, "removed": []}
        child.signal_group(self.meta, signal.SIGTERM, "studio", "export")
        deadline = time.time() + grace_s
        while self.running() and time.time() < deadline:
            time.sleep(0.1)
        if self.running():
            child.signal_group(self.meta, signal.SIGKILL, "studio", "export")
            while self.running() and time.time() < deadline + 5:
                time.sleep(0.05)
        out = Path(self.meta["out"])
        removed = []
        work = out.parent / f".{out.name}.export-{self.pid}"
        if work.exists():
            shutil.rmtree(work, ignore_errors=True)
            removed.append(str(work))
        for p in map(Path, self.meta.get("created", [])):  # deepest first; only what this export made
            if p == out and p.is_dir():
                shutil.rmtree(p, ignore_errors=True)
                removed.append(str(p))
            elif p.is_dir() and not any(p.iterdir()):
                p.rmdir()
                removed.append(str(p))
        child.write_json(self.folder / CANCEL_FILE, {"at": time.time(), "removed": removed, "message": "cancelled"})
        return {"cancelled": True, "removed": removed}


def _job_folders(root: Path) -> list[Path]:
    """Job folders, newest first."""
    if not root.is_dir():
        return []
    return sorted((p for p in root.iterdir() if (p / JOB_FILE).is_file()), key=lambda p: p.name, reverse=True)


def _prune(root: Path) -> None:
    """Keep the newest ``KEEP_JOBS`` job folders (the exports themselves are never touched)."""
    for old in _job_folders(root)[KEEP_JOBS:]:
        try:
            if ExportJob(old).running():
                continue
        except (OSError, ValueError, KeyError, TypeError):
            pass
        shutil.rmtree(old, ignore_errors=True)


def list_exports(root: Path | None = None) -> list[dict]:
    """Exported folders under ``root`` (default $STUDIO_HOME/exports), newest first: {name, path, output, base, gguf}.

    ``path`` is the merged model or combined adapter folder; ``gguf`` the GGUF files written beside it."""
    root = Path(root) if root else exports_dir()
    found = []
    for info in sorted(root.glob("*/export.json"), key=lambda p: p.stat().st_mtime, reverse=True) if root.is_dir() else []:
        try:
            meta = json.loads(info.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        folder = info.parent
        found.append({"name": folder.name, "path": str(folder), "output": meta.get("output", "model"),
                      "base": meta.get("base") or "", "gguf": [str(p) for p in sorted((folder / "gguf").glob("*.gguf"))]})
    return found
