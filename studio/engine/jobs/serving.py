"""An OpenAI-compatible server started from the Chat tab: ``python -m studio serve ...`` as a child process, always on
127.0.0.1, with a generated API key handed over in the environment (``STUDIO_API_KEY``: never on the command line, where
``ps`` shows it). Its folder ``$STUDIO_HOME/serve/<id>/`` is the record: ``job.json`` (command, stamp), ``serve.log``,
``ready.json`` (url and model names, once it listens) and ``key`` (mode 0600, so a reloaded page can show it again).
One server at a time from the page. Pure standard library: importing this module never imports torch.
"""

from __future__ import annotations

import os
import shlex
import socket
import sys
import time
from pathlib import Path

from studio import paths
from studio.engine.access import Access
from studio.engine.jobs import child

LOG, READY, KEY, JOB = "serve.log", "ready.json", "key", "job.json"
HOST = "127.0.0.1"  # the page never opens a server to the network; `studio serve --host` from a shell can


def serve_root() -> Path:
    return paths.studio_home() / "serve"


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def serve_argv(model: str, adapter: str, port: int, folder: Path, python: str = sys.executable, *,
               access: Access) -> list[str]:
    """The ``studio serve`` command for a model the page named (checked against ``access``), as ``--opt=value``."""
    model = access.model(model or "default", "model")
    argv = [python, "-m", "studio", "serve", f"--model={model}"]
    if adapter:
        argv.append(f"--adapter={access.path(adapter, 'served model')}")
    return argv + [f"--host={HOST}", f"--port={int(port)}", f"--ready-file={folder / READY}"]


def shown_command(argv: list[str]) -> str:
    return shlex.join(["studio", *argv[3:]])


def start(model: str, adapter: str = "", *, access: Access, port: int | None = None) -> Path:
    """Start a server for (model, adapter); its folder. RuntimeError when one started from the page still runs."""
    running = current()
    if running is not None:
        raise RuntimeError(f"a server started from the page is running ({status(running, access=access)['url'] or running}): "
                           "stop it first")
    from studio.engine.serve.server import new_api_key

    folder = serve_root() / time.strftime("%Y%m%d-%H%M%S")
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    argv = serve_argv(model, adapter, port or free_port(), folder, access=access)
    key = new_api_key()
    child.atomic_write_text(folder / KEY, key + "\n")
    with open(folder / LOG, "ab") as log:
        log.write(f"$ {shown_command(argv)}\n".encode())
        log.flush()
        proc = child.spawn(argv, log, env=child.child_env({"STUDIO_API_KEY": key}))
    child.write_json(folder / JOB, {**child.stamp(proc.pid), "argv": argv, "started_at": time.time()})
    return folder


def jobs() -> list[Path]:
    root = serve_root()
    return sorted((p for p in root.iterdir() if (p / JOB).is_file()), reverse=True) if root.is_dir() else []


def current() -> Path | None:
    """The newest server folder whose process still runs (what a reloaded page shows)."""
    return next((f for f in jobs() if child.is_job(child.read_json(f / JOB), "serve")), None)


def status(folder: Path, *, access: Access) -> dict:
    """{state: starting/serving/stopped/failed, url, models, key, command, log_tail} of one server folder (which must
    pass ``access``: its key file is read)."""
    folder = access.path(folder, "server folder")
    job = child.read_json(folder / JOB) or {}
    ready = child.read_json(folder / READY) or {}
    _reap(job.get("pid"))
    alive = child.is_job(job, "serve")
    if alive:
        state = "serving" if ready.get("url") else "starting"
    else:
        state = "stopped" if job.get("stopped_at") else "failed"
    try:
        key = (folder / KEY).read_text(encoding="utf-8").strip()
    except OSError:
        key = ""
    return {"state": state, "url": ready.get("url", ""), "models": ready.get("models", []), "key": key,
            "command": shown_command(job["argv"]) if job.get("argv") else "", "folder": str(folder),
            "log_tail": "\n".join(child.tail_lines(folder / LOG, 12, 32 * 1024))}


def _reap(pid) -> None:
    """Collect our own exited child, so it does not linger as a zombie (a pid not ours raises ChildProcessError)."""
    try:
        if isinstance(pid, int) and pid > 1:
            os.waitpid(pid, os.WNOHANG)
    except (ChildProcessError, OSError):
        pass


def stop(folder: Path | None = None, *, access: Access) -> bool:
    """SIGTERM the server (the newest running one when no folder is given); False when none runs."""
    folder = access.path(folder, "server folder") if folder else current()
    if folder is None:
        return False
    job = child.read_json(Path(folder) / JOB)
    if not child.terminate(job, "serve"):
        return False
    child.write_json(Path(folder) / JOB, dict(job, stopped_at=time.time()))
    return True


def client_snippet(url: str, key: str, model: str) -> str:
    """Python with the official ``openai`` client, ready to paste."""
    return (f'from openai import OpenAI\n\nclient = OpenAI(base_url="{url}", api_key="{key}")\n'
            f'reply = client.chat.completions.create(model="{model}", messages=[{{"role": "user", "content": "Hello!"}}])\n'
            "print(reply.choices[0].message.content)\n")
