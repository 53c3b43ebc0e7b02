"""Run ``studio export`` as a background child process for the Export tab (and the ``/export`` API): the exact command a
user can type, built from plain choices; its progress lines and its JSON result read back as plain data.

    req = ExportRequest(sources=["runs/A"], out_dir="exports/A", gguf=["q8_0"])
    shell_command(req)        # 'studio export --adapter runs/A --out exports/A --gguf q8_0'
    job = ExportJob.start(req)
    job.wait()["result"]      # the dict studio.engine.export returns (out_dir, size_bytes, verification, gguf, ...)

The merge loads the base model twice (adapter model, then the saved folder to check it); in a child that memory is
returned when it ends, and the UI process never imports torch for an export. Pure standard library.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from studio.paths import exports_dir, repo_root

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


def cli_args(req: ExportRequest) -> list[str]:
    """``export --adapter ... --out ...``: only the options that differ from the CLI's defaults."""
    args = ["export"]
    for src in req.sources:
        args += ["--adapter", src]
    args += ["--out", req.out_dir]
    if req.weights is not None:
        args += ["--weights", ",".join(f"{w:g}" for w in req.weights)]
        if req.combine != "cat":
            args += ["--combine", req.combine]
        if req.combine.startswith(("ties", "dare", "magnitude")) and req.density != 0.5:
            args += ["--density", f"{req.density:g}"]
        if req.output != "model":
            args += ["--as", req.output]
    if req.dtype != "float32":
        args += ["--dtype", req.dtype]
    if req.gguf:
        args += ["--gguf", ",".join(req.gguf)]
    if req.base:
        args += ["--base", req.base]
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


class ExportJob:
    """One running ``studio export`` child. ``poll()`` never blocks; reader threads drain its pipes."""

    def __init__(self, request: ExportRequest, argv: list[str], process: subprocess.Popen):
        self.request, self.argv, self.process = request, argv, process
        self.started = time.time()
        self.fraction, self.message = 0.0, "starting"
        self.log: deque[str] = deque(maxlen=200)
        self.stdout: list[str] = []
        self._readers = [threading.Thread(target=self._read_err, daemon=True),
                         threading.Thread(target=self._read_out, daemon=True)]
        for r in self._readers:
            r.start()

    @classmethod
    def start(cls, request: ExportRequest, python: str = sys.executable) -> "ExportJob":
        argv = child_argv(request, python)
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        # the child must import this checkout even when the studio is not pip-installed
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(repo_root()), env.get("PYTHONPATH", "")) if p)
        process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   text=True, encoding="utf-8", errors="replace", env=env, start_new_session=True)
        return cls(request, argv, process)

    def _read_err(self) -> None:
        for line in self.process.stderr:
            line = line.rstrip()
            m = PROGRESS_LINE.match(line)
            if m:
                self.fraction, self.message = int(m.group(1)) / 100, m.group(2)
            if line.strip():
                self.log.append(line)

    def _read_out(self) -> None:
        for line in self.process.stdout:
            self.stdout.append(line.rstrip("\n"))

    def poll(self) -> dict:
        """{state: running|finished|failed, fraction, message, seconds, command, exit_code, result, error, log}."""
        code = self.process.poll()
        if code is not None:
            for r in self._readers:
                r.join(timeout=10)
        report = {"state": "running" if code is None else "finished" if code == 0 else "failed",
                  "fraction": self.fraction, "message": self.message, "seconds": round(time.time() - self.started, 1),
                  "command": shell_command(self.request), "argv": self.argv, "exit_code": code, "result": None,
                  "error": None, "log": "\n".join(self.log)}
        if code is not None:
            report.update(self._outcome(code))
        return report

    def _outcome(self, code: int) -> dict:
        parsed = None
        for line in self.stdout:
            if line.startswith("{"):
                try:
                    parsed = json.loads(line)
                except ValueError:
                    pass
        if code == 0 and parsed is not None:
            return {"result": parsed, "fraction": 1.0}
        if parsed is not None:  # the CLI's own error report: a one-line reason and the failed check's numbers
            return {"error": parsed.get("error"), "result": parsed.get("result")}
        last = next((ln for ln in reversed(self.log) if ln.strip()), "")
        return {"error": f"studio export exited with code {code}" + (f": {last}" if last else "")}

    def wait(self, timeout: float | None = None) -> dict:
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pass
        return self.poll()

    def cancel(self) -> None:
        """Stop the child (its work folder is hidden and never replaces the output: nothing half-written is kept)."""
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, 15)
            except (ProcessLookupError, PermissionError):
                pass


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
