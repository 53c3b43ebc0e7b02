"""The attack harness: a real ``python launch.py`` on a free port with its own STUDIO_HOME, raw HTTP requests against it,
and a tally printed at the end of the session (``attacks blocked N/N``).

Every test marked ``attack`` (``pytestmark = pytest.mark.attack`` in a module) counts as one attack; it is blocked when
the test passes. Adding one is a few lines:

    def test_my_attack(studio):
        reply = studio.request("POST", "/gradio_api/call/x", headers={"Origin": "http://evil.example"}, body=b"{}")
        assert reply.status == 403

Fixtures: ``studio`` (no login, module-wide), ``studio_with_login`` (``--auth``; its ``.auth`` is (user, password)),
``launch`` (start your own with any flags; stopped after the test), ``launch_refused`` (run launch.py, expect it to exit).
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import sys
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers import stop_process, wait_until

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 180
LOGIN = ("alice", "correct-horse-battery")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Reply:
    status: int
    headers: dict[str, str]  # lower-case names
    body: str

    def json(self):
        return json.loads(self.body)


class Studio:
    """``python launch.py --port P [flags]`` in a child with STUDIO_HOME=home; output collected by a thread."""

    def __init__(self, *flags: str, home: Path, env: dict | None = None):
        self.port, self.home, self.flags = free_port(), home, flags
        self.auth: tuple[str, str] | None = None
        # PYTHONPATH: the checkout under test, not whatever checkout the venv has installed in editable mode
        full_env = dict(os.environ, PYTHONUNBUFFERED="1", STUDIO_HOME=str(home), PYTHONPATH=str(ROOT))
        full_env.pop("STUDIO_AUTH", None)  # a login in the tester's environment must not change what a test launches
        full_env.update(env or {})
        self.proc = subprocess.Popen([sys.executable, "launch.py", "--port", str(self.port), *flags], cwd=ROOT,
                                     env=full_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                     start_new_session=True)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=lambda: self.lines.extend(self.proc.stdout), daemon=True)
        self._reader.start()

    def output(self) -> str:
        return "".join(self.lines)

    def wait_up(self) -> "Studio":
        def up() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"launch.py {' '.join(self.flags)} exited ({self.proc.returncode}): {self.output()}")
            return "Tuning Studio at" in self.output()

        wait_until(up, START_TIMEOUT_S, "launch.py to say 'Tuning Studio at'", interval=0.1)
        return self

    def request(self, method: str, path: str, headers: dict | None = None, body: bytes | str | None = None,
                host: str | None = None) -> Reply:
        """One raw HTTP request; ``host`` (default 127.0.0.1:PORT) is sent as the Host header, whatever it says (even "")."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
            conn.putheader("Host", f"127.0.0.1:{self.port}" if host is None else host)
            data = body.encode() if isinstance(body, str) else body
            for name, value in (headers or {}).items():
                conn.putheader(name, value)
            if data is not None:
                conn.putheader("Content-Length", str(len(data)))
            conn.endheaders(data)
            resp = conn.getresponse()
            return Reply(resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read().decode("utf-8", "replace"))
        finally:
            conn.close()

    def login(self, user: str, password: str, host: str | None = None) -> Reply:
        form = f"username={user}&password={password}"
        return self.request("POST", "/login", {"Content-Type": "application/x-www-form-urlencoded"}, form, host=host)

    def call_api(self, name: str, **kwargs) -> str:
        """Call a ``gr.api`` endpoint over raw HTTP with its defaults and ``kwargs``; returns the event stream's text."""
        params = self.request("GET", "/gradio_api/info").json()["named_endpoints"][f"/{name}"]["parameters"]
        data = [kwargs.get(p["parameter_name"], p.get("parameter_default")) for p in params]
        posted = self.request("POST", f"/gradio_api/call/{name}", {"Content-Type": "application/json"},
                              json.dumps({"data": data}))
        assert posted.status == 200, posted
        return self.request("GET", f"/gradio_api/call/{name}/{posted.json()['event_id']}").body

    def stop(self) -> None:
        stop_process(self.proc, timeout=20)


@pytest.fixture
def launch(tmp_path):
    """``launch(*flags, env=None)`` -> a started Studio (stopped after the test)."""
    started: list[Studio] = []

    def start(*flags: str, env: dict | None = None) -> Studio:
        studio = Studio(*flags, home=tmp_path / f"home{len(started)}", env=env)
        started.append(studio)
        return studio.wait_up()

    yield start
    for studio in started:
        studio.stop()


@pytest.fixture
def launch_refused(tmp_path):
    """``launch_refused(*flags, env=None)`` -> (exit code, output) of a launch.py that must exit on its own."""
    def run(*flags: str, env: dict | None = None) -> tuple[int, str]:
        studio = Studio(*flags, home=tmp_path / "refused", env=env)
        try:
            rc = studio.proc.wait(timeout=START_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            studio.stop()
            raise AssertionError(f"launch.py {' '.join(flags)} kept running: {studio.output()}") from None
        studio._reader.join(timeout=5)
        return rc, studio.output()

    return run


@contextmanager
def started(tmp_path_factory, *flags: str):
    studio = Studio(*flags, home=tmp_path_factory.mktemp("studio_home"))
    try:
        yield studio.wait_up()
    finally:
        studio.stop()


@pytest.fixture(scope="module")
def studio(tmp_path_factory):
    """The default launch: loopback, no login."""
    with started(tmp_path_factory) as s:
        yield s


@pytest.fixture(scope="module")
def studio_with_login(tmp_path_factory):
    with started(tmp_path_factory, "--auth", ":".join(LOGIN)) as s:
        s.auth = LOGIN
        yield s


# -- the tally ---------------------------------------------------------------------------------------------------------------

TALLY = {"tried": 0, "blocked": 0, "open": []}


def pytest_configure(config):
    config.addinivalue_line("markers", "attack: one attack on the launched studio; passing = blocked (tallied at the end)")


def pytest_runtest_logreport(report):
    if "attack" not in report.keywords or report.skipped:
        return
    if report.when == "call" or (report.when == "setup" and report.failed):
        TALLY["tried"] += 1
        if report.passed:
            TALLY["blocked"] += 1
        elif not report.skipped:
            TALLY["open"].append(report.nodeid)


def pytest_terminal_summary(terminalreporter):
    if TALLY["tried"]:
        terminalreporter.write_line(f"attacks blocked {TALLY['blocked']}/{TALLY['tried']}")
        for nodeid in TALLY["open"]:
            terminalreporter.write_line(f"  NOT blocked: {nodeid}")
