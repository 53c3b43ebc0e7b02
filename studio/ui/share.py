"""``--share``: the generated login kept in a file only its owner can read, and whether gradio's share server answers at
all (offline, ``launch(share=True)`` would first wait out a DNS timeout and a 30 s HTTP one before saying it cannot)."""

from __future__ import annotations

import os
import socket
import threading
from pathlib import Path

from studio import paths

PROBE_S = 3.0  # how long --share may wait to learn there is no internet before it serves locally only


def reachable(timeout: float = PROBE_S) -> bool:
    """Whether gradio's share server accepts a connection within ``timeout`` s. Offline, with a network that does not
    answer, ``launch(share=True)`` would first wait out a DNS timeout and a 30 s HTTP one (the page up, no URL printed)."""
    host, _, port = (os.environ.get("GRADIO_SHARE_SERVER_ADDRESS") or "api.gradio.app:443").rpartition(":")
    ok: list[bool] = []

    def probe() -> None:  # in a thread: a name lookup cannot be given a timeout
        try:
            socket.create_connection((host, int(port)), timeout=timeout).close()
            ok.append(True)
        except (OSError, ValueError):
            pass

    thread = threading.Thread(target=probe, name="studio-share-probe", daemon=True)
    thread.start()
    thread.join(timeout)
    return bool(ok)


def write_login(user: str, password: str) -> Path:
    """Keep the generated share login in ``$STUDIO_HOME/share-login.txt`` (mode 0600), so it survives a closed terminal."""
    path = paths.studio_home() / "share-login.txt"
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # an older file keeps its mode through O_CREAT: set it
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(f"user: {user}\npassword: {password}\n")
    return path
