"""``studio serve`` as a user types it (issue 17, item 2): loopback by default, a generated key printed when none is given,
the ``openai`` client against it, SIGTERM stops it; bad arguments are one line and exit 2."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests.helpers import wait_until

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_prints_a_key_binds_loopback_answers_and_stops(tiny_model_dir, tmp_path):
    from openai import OpenAI

    port, ready = free_port(), tmp_path / "ready.json"
    env = {k: v for k, v in os.environ.items() if k != "STUDIO_API_KEY"}
    proc = subprocess.Popen([sys.executable, "-m", "studio", "serve", f"--model={tiny_model_dir}", f"--port={port}",
                             f"--ready-file={ready}"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True).start()
    try:
        wait_until(lambda: any(ln.startswith("serving ") for ln in lines) or proc.poll() is not None, 300,
                   "studio serve to say 'serving'")
        out = "".join(lines)
        assert proc.poll() is None, out
        key = next(ln.rsplit(": ", 1)[1].strip() for ln in lines if ln.startswith("API key (generated"))
        info = json.loads(ready.read_text())
        assert info["url"] == f"http://127.0.0.1:{port}/v1" and info["models"] == [tiny_model_dir.name]
        assert f"serving http://127.0.0.1:{port}/v1" in out
        reply = OpenAI(base_url=info["url"], api_key=key, max_retries=0).chat.completions.create(
            model=tiny_model_dir.name, messages=[{"role": "user", "content": "hi"}], max_tokens=3)
        assert reply.choices[0].message.role == "assistant"
        os.killpg(proc.pid, signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.mark.parametrize("args, says", [
    (["--port=70000"], "--port=70000: allowed 0 to 65535"),
    (["--max-tokens-limit=0"], "--max-tokens-limit=0: allowed 1 to 32768"),
    (["--model=/no/such/model"], "no such model folder"),
])
def test_bad_serve_arguments_are_one_line_and_exit_2(args, says):
    res = subprocess.run([sys.executable, "-m", "studio", "serve", *args], capture_output=True, text=True, cwd=ROOT,
                         timeout=300)
    assert res.returncode == 2 and says in res.stderr and "Traceback" not in res.stderr
