"""Faults on the process side, injected for real and measured from outside, as a user would meet them:

- the studio (``python launch.py``) killed with SIGKILL while a run trains: the trainer goes on, a restarted studio
  re-attaches to it (same pid), the run finishes and metrics.jsonl is whole;
- a child that prints 100 MB: the studio keeps answering HTTP within seconds and the log tail still comes back;
- the client gone mid-run (its connection dropped; a real browser closed in the ``browser`` tier): the run finishes;
- no network at all (``unshare --net``, root only): start, train, chat, export and ``--share`` with nothing reaching
  for a hub, every step timed.

Each test prints what it measured. The kill -9 and no-network tests take a minute or two each (two studio start-ups,
real children): they are marked ``slow``; the browser one ``browser``. Run: ``pytest tests/ui/test_faults_ui.py``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import stat
import struct
import subprocess
import sys
import textwrap
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from studio.engine import rundir
from studio.engine.jobs import child
from tests.helpers import stop_process, wait_until, write_jsonl

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 180  # python + gradio import and the page build, on a busy machine
RUN_TIMEOUT_S = 600
ENDED = ("finished", "failed", "aborted")
DEAD_NET = "10.9.9.1/24"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def studio_home(tmp: Path, tiny_model_dir: Path) -> Path:
    """A STUDIO_HOME holding the tiny model and a small dataset (inside it: the page may only read its own folders)."""
    home = tmp / "home"
    shutil.copytree(tiny_model_dir, home / "models" / "tiny")
    (home / "data").mkdir(parents=True)
    write_jsonl(home / "data" / "alpaca.jsonl",
                [{"instruction": f"Say {i}.", "input": "", "output": f"{i}."} for i in range(16)])
    return home


def tiny_run(home: Path, steps: int, name: str) -> dict:
    """/start_run overrides: the tiny model, a metrics line per step, no checkpoints."""
    return {"model.name_or_path": str(home / "models" / "tiny"), "data.datasets": [str(home / "data" / "alpaca.jsonl")],
            "training.max_steps": steps, "training.per_device_train_batch_size": 4, "training.cutoff_len": 64,
            "training.logging_steps": 1, "output.run_name": name}


class Studio:
    """``python launch.py`` as its own process (own STUDIO_HOME, free port); output collected by a thread."""

    def __init__(self, home: Path, *flags: str):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        env = dict(os.environ, PYTHONUNBUFFERED="1", STUDIO_HOME=str(home))
        self.started = time.monotonic()
        self.proc = subprocess.Popen([sys.executable, "launch.py", "--port", str(self.port), *flags], cwd=ROOT, env=env,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
        self.lines: list[str] = []
        threading.Thread(target=lambda: self.lines.extend(self.proc.stdout), daemon=True).start()

    def output(self) -> str:
        return "".join(self.lines)[-4000:]

    def wait_up(self) -> float:
        """Seconds from the command to the first HTTP 200."""
        def answered() -> bool:
            assert self.proc.poll() is None, f"launch.py exited:\n{self.output()}"
            try:
                with urllib.request.urlopen(self.url, timeout=2) as r:
                    return r.status == 200
            except (urllib.error.URLError, OSError):
                return False

        wait_until(answered, START_TIMEOUT_S, "an HTTP 200 from launch.py", interval=0.1)
        return time.monotonic() - self.started

    def client(self):
        from gradio_client import Client

        return Client(self.url, verbose=False)

    def kill9(self) -> None:
        os.kill(self.proc.pid, signal.SIGKILL)  # the UI process only: what the OOM killer or `kill -9 <pid>` does
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        stop_process(self.proc, timeout=30)


def _metrics_lines(run_dir: Path) -> list[dict]:
    """Every line of metrics.jsonl, parsed: a broken line fails here, naming it."""
    out = []
    for i, line in enumerate((run_dir / rundir.METRICS).read_text(encoding="utf-8").splitlines(), 1):
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise AssertionError(f"{run_dir / rundir.METRICS}:{i}: broken line {line!r}") from exc
    return out


def _step(run_dir: Path) -> int:
    return int(rundir.read_status(run_dir).get("step") or 0)


# -- 1. the studio killed with SIGKILL while a run trains ------------------------------------------------------------------


@pytest.mark.slow  # two studio start-ups and a training child: about a minute, more on a busy machine
def test_studio_killed_mid_run_restarts_reattaches_and_the_run_finishes(tmp_path, tiny_model_dir):
    # the tiny model trains a step in ~10 ms, so the trainer is held (SIGSTOP) whenever the test does something slower
    # than a step (killing the studio, starting the next one); 600 steps leave room for the tens it makes while polled
    steps = 600
    home = studio_home(tmp_path, tiny_model_dir)
    first = Studio(home)
    second, record = None, {}
    try:
        first.wait_up()
        started = first.client().predict(preset="", overrides=tiny_run(home, steps, "killed-ui"), api_name="/start_run")
        run_dir = Path(started["run_dir"])
        wait_until(lambda: _step(run_dir) >= 2, RUN_TIMEOUT_S, "the run's second step", interval=0.01)
        record = rundir.read_status(run_dir)
        os.kill(record["pid"], signal.SIGSTOP)
        first.kill9()
        at_kill = _step(run_dir)
        assert child.is_job(record), "the trainer died with the studio"
        # the trainer goes on with no studio at all
        os.kill(record["pid"], signal.SIGCONT)
        wait_until(lambda: _step(run_dir) >= at_kill + 2, RUN_TIMEOUT_S, "steps with no studio", interval=0.005)
        # hold it again while the new studio starts (its start-up time is the machine's, the run's length is the tiny
        # model's): otherwise the run could end before there is anything to re-attach to
        os.kill(record["pid"], signal.SIGSTOP)
        unattended = _step(run_dir) - at_kill
        assert unattended < steps - at_kill, "the run ended before the studio came back: nothing left to re-attach to"
        try:
            second = Studio(home)
            took = second.wait_up()
            seen = second.client().predict(api_name="/run_status")  # no run id: the run the new studio calls its own
        finally:
            os.kill(record["pid"], signal.SIGCONT)
        assert seen["run_id"] == run_dir.name and seen["state"] == "running", seen
        assert rundir.read_status(run_dir)["pid"] == record["pid"] and child.is_job(record)
        client = second.client()
        final = wait_until(lambda: (s := client.predict(run_id=run_dir.name, api_name="/run_status"))["state"] in ENDED
                           and s, RUN_TIMEOUT_S, "the run to end", interval=0.5)
        assert final["state"] == "finished" and final["step"] == steps, final
        lines = _metrics_lines(run_dir)
        train = [m["step"] for m in lines if m["kind"] == "train"]
        assert train == list(range(1, steps + 1))
        # the new studio reaped the run it adopted: nothing is active any more
        wait_until(lambda: not any(r["state"] == "running" for r in client.predict(api_name="/list_runs")), 30,
                   "the adopted run to be released")
    finally:
        for studio in (first, second):
            if studio is not None:
                studio.stop()
        child.terminate(record)  # a trainer left behind by a failed assertion (only that very process)
    print(f"kill -9 of the studio at step {at_kill}; the trainer went on alone ({unattended} steps); re-attached after "
          f"restart in {took:.1f} s (pid {record['pid']} adopted); run finished, {len(lines)} metrics lines intact "
          f"(train steps 1..{steps}, each once)")


# -- 2. a child that prints 100 MB; 3. the client gone mid-run (in-process studio) --------------------------------------


NOISY_CHILD = textwrap.dedent('''
    """Stands in for `python -m studio.train CONFIG --output-dir=RUN`: 100 MB of output on stdout and stderr in 100-byte
    lines (a library warning in a loop), then one last line, then "finished"."""
    import os, sys, time
    from studio.engine import rundir
    from studio.engine.jobs import child

    run = next(a.split("=", 1)[1] for a in sys.argv if a.startswith("--output-dir="))  # the studio writes --flag=VALUE
    rundir.write_status(run, state="running", started_at=time.time(), max_steps=1, **child.stamp(os.getpid()))
    line = "warning: a library that will not stop talking about it " + "." * 44 + "\\n"
    for _ in range(100 * 1024 * 1024 // (2 * len(line))):
        sys.stdout.write(line)
        sys.stderr.write(line)
    print("LAST LINE after 100 MB", flush=True)
    rundir.write_status(run, state="finished", exit_code=0, step=1, ended_at=time.time())
''')


@pytest.fixture(scope="module")
def inproc(tmp_path_factory, tiny_model_dir):
    """A studio in this process (so a test can swap the trainer command) on a free port: (ctx, url, client, home)."""
    from gradio_client import Client

    from studio.ui import app
    from studio.ui.context import AppContext

    tmp = tmp_path_factory.mktemp("faults_ui")
    home = studio_home(tmp, tiny_model_dir)
    ctx = AppContext.create(runs_root=tmp / "runs", allow_paths=(home,))  # the session's STUDIO_HOME is elsewhere
    ctx.presets_root = tmp / "presets"
    ctx.presets_root.mkdir()
    (ctx.presets_root / "tiny.yaml").write_text(
        f"# Tiny fault-test preset.\nmodel:\n  name_or_path: {home / 'models' / 'tiny'}\n"
        f"data:\n  datasets: [{home / 'data' / 'alpaca.jsonl'}]\ntraining:\n  max_steps: 6\n"
        "  per_device_train_batch_size: 4\n  cutoff_len: 64\n  logging_steps: 1\noutput:\n  run_name: tiny\n")
    demo = app.build_app(ctx)
    demo.queue()
    _, url, _ = demo.launch(server_port=free_port(), prevent_thread_lock=True, ssr_mode=False, quiet=True)
    try:
        yield ctx, url, Client(url, verbose=False), home
    finally:
        demo.close()
        ctx.close()


def _noisy_python(tmp: Path) -> str:
    """An executable that takes `-m studio.train ARGS` and runs NOISY_CHILD with ARGS."""
    script = tmp / "noisy_child.py"
    script.write_text(NOISY_CHILD)
    wrapper = tmp / "python"
    wrapper.write_text(f'#!/bin/sh\nshift 2\nexec "{sys.executable}" "{script}" "$@"\n')
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IEXEC)
    return str(wrapper)


def _timed(fn) -> float:
    t0 = time.monotonic()
    fn()
    return time.monotonic() - t0


def test_a_child_printing_100_mb_leaves_the_studio_responsive_and_the_tail_readable(inproc, tmp_path):
    ctx, url, client, home = inproc
    ctx.jobs.python = _noisy_python(tmp_path)
    try:
        started = client.predict(preset="tiny", overrides={"output.run_name": "noisy"}, api_name="/start_run")
    finally:
        ctx.jobs.python = sys.executable
    run_dir = Path(started["run_dir"])
    out = run_dir / rundir.CHILD_OUTPUT
    samples = []  # (bytes printed so far, seconds for GET /, seconds for /run_status)
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while rundir.read_status(run_dir).get("state") not in ENDED and time.monotonic() < deadline:
        printed = out.stat().st_size if out.exists() else 0
        page = _timed(lambda: urllib.request.urlopen(url, timeout=30).read())
        status = _timed(lambda: client.predict(run_id=run_dir.name, api_name="/run_status"))
        samples.append((printed, page, status))
    final = client.predict(run_id=run_dir.name, api_name="/run_status")
    size = out.stat().st_size
    tail_s = _timed(lambda: child.tail_lines(out, 40))
    during = [s for s in samples if 0 < s[0] < size]
    assert final["state"] == "finished" and size >= 100 * 1024 * 1024, (final, size)
    assert during, "no request was made while the child printed"
    worst = max(max(p, s) for _, p, s in during)
    assert worst < 5.0, f"the studio took {worst:.1f} s to answer while the child printed: {during}"
    assert final["log_tail"].splitlines()[-1] == "LAST LINE after 100 MB"
    assert len(final["log_tail"].splitlines()) == 20 and tail_s < 1.0
    print(f"child printed {size / 2**20:.0f} MB; {len(during)} request pairs while it printed, slowest GET / "
          f"{max(p for _, p, _ in during):.2f} s and /run_status {max(s for _, _, s in during):.2f} s; "
          f"tail of the 100 MB log read in {tail_s * 1000:.1f} ms, last line intact")


def test_a_client_gone_mid_run_leaves_the_run_to_finish(inproc):
    """The caller starts a run over plain HTTP, then drops its connection without reading the answer."""
    ctx, url, client, home = inproc
    body = json.dumps({"data": ["tiny", {"output.run_name": "client-gone"}]}).encode()
    req = urllib.request.Request(f"{url}gradio_api/call/start_run", data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        event = json.loads(r.read())["event_id"]
    port = int(url.rstrip("/").rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:  # the answer's stream, dropped at once
        sock.sendall(f"GET /gradio_api/call/start_run/{event} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # a reset, as a killed tab sends

    def started():
        return next((r for r in client.predict(api_name="/list_runs") if r["run_id"].endswith("client-gone")), None)

    run = wait_until(started, 60, "the run the gone client started")
    t0 = time.monotonic()
    final = wait_until(lambda: (s := client.predict(run_id=run["run_id"], api_name="/run_status"))["state"] in ENDED
                       and s, RUN_TIMEOUT_S, "the run to end", interval=0.5)
    assert final["state"] == "finished" and final["step"] == 6, final
    print(f"client dropped its connection before the answer; the run went on and finished 6 steps "
          f"({time.monotonic() - t0:.1f} s after it appeared)")


@pytest.mark.browser
def test_the_browser_closed_mid_run_leaves_the_run_to_finish(inproc):
    """A real headless Chromium starts a run from the Train tab and is closed while it trains."""
    chromium = "/usr/bin/chromium"
    if not Path(chromium).exists():
        pytest.skip(f"{chromium} not installed (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (uses the system Chromium)")
    ctx, url, client, home = inproc
    before = {r["run_id"] for r in client.predict(api_name="/list_runs")}
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-gpu", "--no-first-run"])
        page = browser.new_page()
        page.set_default_timeout(120_000)
        page.goto(url)
        page.locator("#train-preset input").click()
        page.get_by_role("option", name="tiny").click()
        page.wait_for_function("() => (document.querySelector('#cfg-model-name_or_path textarea, "
                               "#cfg-model-name_or_path input')?.value || '').includes('tiny')", timeout=60_000)
        page.locator("#train-start").click()
        page.wait_for_selector("#train-message strong", timeout=60_000)
        run = wait_until(lambda: next((r for r in client.predict(api_name="/list_runs") if r["run_id"] not in before),
                                      None), 60, "the run the page started")
        run_dir = Path(run["run_dir"])
        wait_until(lambda: _step(run_dir) >= 1, RUN_TIMEOUT_S, "the first step", interval=0.2)
        at_close = _step(run_dir)
        browser.close()  # the whole browser: tab, session and its open connections
    final = wait_until(lambda: (s := client.predict(run_id=run_dir.name, api_name="/run_status"))["state"] in ENDED
                       and s, RUN_TIMEOUT_S, "the run to end", interval=0.5)
    assert final["state"] == "finished" and final["step"] == 6, final
    assert [m["step"] for m in _metrics_lines(run_dir) if m["kind"] == "train"] == list(range(1, 7))
    print(f"browser closed at step {at_close}; the run went on and finished 6 steps")


# -- 4. no network at all ----------------------------------------------------------------------------------------------


NET_AUDIT = textwrap.dedent('''
    """sitecustomize for the no-network test: every Python process of the studio (UI, trainer, export) appends each
    name lookup and connect it attempts to NET_AUDIT_LOG, one JSON line each (audit hooks: PEP 578)."""
    import json, os, sys

    LOG = os.environ.get("NET_AUDIT_LOG")
    EVENTS = {"socket.getaddrinfo": 0, "socket.gethostbyname": 0, "socket.connect": 1, "socket.sendto": 2}


    def _hook(event, args):
        if LOG and event in EVENTS:
            target = args[EVENTS[event]] if event != "socket.getaddrinfo" else args[:2]
            with open(LOG, "a", encoding="utf-8") as fh:
                fh.write(json.dumps({"event": event, "target": repr(target), "argv": " ".join(sys.argv[:4])}) + "\\n")


    def _exit():  # proves this process ran with the hook (a child that never touches a socket leaves only this line)
        if LOG:
            with open(LOG, "a", encoding="utf-8") as fh:
                fh.write(json.dumps({"event": "exit", "target": "", "argv": " ".join(sys.argv[:4])}) + "\\n")


    if LOG:
        import atexit

        atexit.register(_exit)
        sys.addaudithook(_hook)
''')

OFFLINE_DRIVER = textwrap.dedent('''
    """Run inside `unshare --net` (loopback only): start the studio, train, chat, export, then `--share`; time each step
    and write them as JSON to argv[2]. argv: HOME REPORT ROOT AUDIT_DIR."""
    import json, os, socket, subprocess, sys, threading, time, urllib.request
    from pathlib import Path

    from gradio_client import Client

    home, report, root, audit = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]), Path(sys.argv[4])
    env = dict(os.environ, STUDIO_HOME=str(home), PYTHONUNBUFFERED="1", NET_AUDIT_LOG=str(audit / "net.jsonl"),
               PYTHONPATH=os.pathsep.join([str(audit), str(root)]))
    times, notes = {}, {}


    def launch(*flags):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        proc = subprocess.Popen([sys.executable, "launch.py", "--port", str(port), *flags], cwd=root, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        lines = []
        threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True).start()
        url = f"http://127.0.0.1:{port}/"
        for _ in range(3000):
            if proc.poll() is not None:
                raise SystemExit("launch.py exited: " + "".join(lines))
            try:
                urllib.request.urlopen(url, timeout=2).read()
                return proc, url, lines
            except OSError:
                time.sleep(0.1)
        raise SystemExit("launch.py did not answer: " + "".join(lines))


    def timed(name, fn):
        t0 = time.monotonic()
        out = fn()
        times[name] = round(time.monotonic() - t0, 2)
        return out


    def wait_run(client, run_id):
        while True:
            st = client.predict(run_id=run_id, api_name="/run_status")
            if st["state"] in ("finished", "failed", "aborted"):
                return st
            time.sleep(0.5)


    tiny = home / "models" / "tiny"
    proc, url, lines = timed("start", launch)
    try:
        client = Client(url, verbose=False)
        overrides = {"model.name_or_path": str(tiny), "data.datasets": [str(home / "data" / "alpaca.jsonl")],
                     "training.max_steps": 3, "training.per_device_train_batch_size": 4, "training.cutoff_len": 64,
                     "output.run_name": "offline"}
        run = client.predict(preset="", overrides=overrides, api_name="/start_run")
        notes["train"] = timed("train", lambda: wait_run(client, run["run_id"]))
        notes["chat"] = timed("chat", lambda: client.predict(prompt="Say 3.", adapter=run["run_dir"], model=str(tiny),
                                                             max_new_tokens=8, api_name="/chat_compare"))
        notes["export"] = timed("export", lambda: client.predict(sources=[run["run_dir"]],
                                                                 out_dir=str(home / "exports" / "offline"),
                                                                 api_name="/export"))["ok"]
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    t0 = time.monotonic()
    proc, url, lines = launch("--share")
    try:
        up = time.monotonic()
        while not any("could not be created" in ln or "public link:" in ln for ln in lines) and time.monotonic() - t0 < 300:
            time.sleep(0.1)
        times["share"] = round(time.monotonic() - t0, 2)
        times["share_after_up"] = round(time.monotonic() - up, 2)  # the page served, the user still without an answer
        notes["share_output"] = "".join(lines)[-1500:]
        notes["share_serving"] = urllib.request.urlopen(url, timeout=10).status
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    report.write_text(json.dumps({"times": times, "notes": notes}, default=str))
''')


def _loopback(target: str) -> bool:
    return any(x in target for x in ("127.0.0.1", "'localhost'", "::1", "'/")) or target.startswith(("'/", '"/'))


@pytest.mark.slow  # two studio start-ups, a trainer, a chat model and an export child: one to two minutes
def test_no_network_start_train_chat_export_and_share_with_nothing_reaching_out(tmp_path, tiny_model_dir):
    if os.geteuid() != 0 or not shutil.which("unshare") or not shutil.which("ip"):
        pytest.skip("needs root with unshare and ip, for a network namespace with only loopback")
    probe = subprocess.run(["unshare", "--net", "ip", "link", "set", "lo", "up"], capture_output=True, text=True)
    if probe.returncode:
        pytest.skip(f"unshare --net does not work here: {probe.stderr.strip()}")
    # a default route into a TUN device nobody reads: packets vanish, so a DNS lookup or a connect waits for its timeout
    # (as on a laptop whose Wi-Fi is up but leads nowhere) instead of failing at once for want of a route
    dead = f"ip tuntap add dev tun0 mode tun && ip addr add {DEAD_NET} dev tun0 && ip link set tun0 up && " \
           "ip route add default dev tun0"
    mode = "dead network (packets dropped)" if subprocess.run(["unshare", "--net", "sh", "-c", dead],
                                                              capture_output=True).returncode == 0 else "loopback only"
    home = studio_home(tmp_path, tiny_model_dir)
    audit = tmp_path / "audit"
    audit.mkdir()
    (audit / "sitecustomize.py").write_text(NET_AUDIT)
    (tmp_path / "driver.py").write_text(OFFLINE_DRIVER)
    report = tmp_path / "report.json"
    setup = "ip link set lo up" + (f" && {dead}" if mode.startswith("dead") else "")
    cmd = f'{setup} && exec "{sys.executable}" "{tmp_path / "driver.py"}" "{home}" "{report}" "{ROOT}" "{audit}"'
    done = subprocess.run(["unshare", "--net", "sh", "-c", cmd], capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0 and report.is_file(), done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads(report.read_text())
    times, notes = result["times"], result["notes"]
    log = audit / "net.jsonl"
    attempts = [json.loads(x) for x in log.read_text().splitlines()] if log.exists() else []
    outward = [a for a in attempts if a["event"] != "exit" and not _loopback(a["target"])]
    audited = [a["argv"] for a in attempts if a["event"] == "exit"]
    assert any("studio/train.py" in a for a in audited) and any(" export " in a for a in audited), audited  # children too
    assert notes["train"]["state"] == "finished", notes["train"]
    assert isinstance(notes["chat"]["tuned"], str) and notes["export"] is True
    share = notes["share_output"]
    assert "share link could not be created" in share and "still serving locally" in share and notes["share_serving"] == 200
    before_share = [a for a in outward if "--share" not in a["argv"]]
    assert not before_share, f"reached for the network with no network: {before_share}"
    # a DNS timeout alone is 10 s on a dead network: --share must not wait for one after the page is up
    assert times["share_after_up"] < 5, times
    print(f"{mode}: studio up in {times['start']} s, 3 steps trained in {times['train']} s, chat in {times['chat']} s, "
          f"export in {times['export']} s, --share answered in {times['share']} s ({times['share_after_up']} s after the "
          f"page was up) and kept serving; outward attempts: {len(before_share)} (the --share launch tried "
          f"{len(outward) - len(before_share)}: {sorted({a['target'] for a in outward})[:4]})")
