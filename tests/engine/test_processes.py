"""Processes and the files they leave: a pid read from a status file is signalled only while it is still that job (never
a process that reused the pid), a corrupt status file hides nothing but its own run, children never see the login secret,
and the studio's home is its owner's alone."""

from __future__ import annotations

import json
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

from studio import paths
from studio.engine import rundir
from studio.engine.jobs import child
from studio.engine.jobs import training as jobs
from tests.helpers import wait_until


def _bystander() -> subprocess.Popen:
    """An unrelated long-lived process in its own session: what a reused pid would belong to after a reboot."""
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"], start_new_session=True)


def test_a_reused_pid_is_never_adopted_or_signalled(tmp_path):
    other = _bystander()
    try:
        run = tmp_path / "runs" / "20250101-000000-old"
        run.mkdir(parents=True)
        # a status file from before a reboot: "running" with a pid that now belongs to someone else
        (run / rundir.STATUS).write_text(json.dumps({"state": "running", "pid": other.pid, "pid_start": 12345,
                                                     "boot_id": "another-boot"}))
        assert not child.is_job(rundir.read_status(run), run.name)
        assert rundir.effective_status(run)["state"] == "failed"  # shown as ended, not as running
        manager = jobs.JobManager(tmp_path / "runs")
        manager.recover()
        assert manager.active() is None  # not adopted
        assert not child.signal_group(rundir.read_status(run), signal.SIGKILL, run.name)
        # a record without a stamp (older studios) needs a command line naming the run: the bystander's does not
        (run / rundir.STATUS).write_text(json.dumps({"state": "running", "pid": other.pid}))
        assert not child.signal_group(rundir.read_status(run), signal.SIGKILL, run.name)
        time.sleep(0.2)
        assert other.poll() is None  # still alive: nothing was sent to it
    finally:
        other.kill()
        other.wait()


def test_the_stamp_recognises_the_very_process(tmp_path):
    proc = child.spawn([sys.executable, "-c", "import time; time.sleep(60)"], subprocess.DEVNULL)
    try:
        record = child.stamp(proc.pid)
        assert record["pid_start"] is not None and child.is_job(record)
        assert not child.is_job(dict(record, pid_start=record["pid_start"] + 1))  # same pid, other start: someone else
        assert child.signal_group(record, signal.SIGTERM)
        wait_until(lambda: proc.poll() is not None, 10, "the job to end on SIGTERM")
        assert not child.is_job(record)  # gone
    finally:
        proc.kill()


def test_a_corrupt_status_file_shows_that_run_as_unreadable_and_every_other_run(tmp_path):
    root = tmp_path / "runs"
    for name, status in (("a-good", {"state": "finished", "step": 5, "max_steps": 5, "final_loss": 1.5}),
                         ("b-odd", {"state": "finished", "step": "n/a", "max_steps": None, "started_at": "yesterday",
                                    "exit_code": "zero", "final_loss": "low"})):
        (root / name).mkdir(parents=True)
        (root / name / rundir.STATUS).write_text(json.dumps(status))
    (root / "c-broken").mkdir()
    (root / "c-broken" / rundir.STATUS).write_text('{"state": "runn')  # half a file (a full disk, a crash)
    runs = {r.run_id: r for r in rundir.list_runs(root)}
    assert set(runs) == {"a-good", "b-odd", "c-broken"}
    assert runs["a-good"].step == 5 and runs["a-good"].final_loss == 1.5
    assert runs["b-odd"].step == 0 and runs["b-odd"].started_at is None and runs["b-odd"].exit_code is None
    assert runs["c-broken"].state == "unreadable" and "not a JSON object" in runs["c-broken"].extra["error"]
    rundir.write_status(root / "c-broken", state="aborted")  # a writer replaces a corrupt file, never merges into it
    assert rundir.read_status(root / "c-broken")["state"] == "aborted"


def test_children_never_inherit_the_login_and_get_values_as_options(tmp_path, monkeypatch):
    monkeypatch.setenv("STUDIO_AUTH", "alice:correct-horse")
    env = child.child_env()
    assert "STUDIO_AUTH" not in env and env["PYTHONUNBUFFERED"] == "1"
    out = subprocess.run([sys.executable, "-c", "import os; print(os.environ.get('STUDIO_AUTH'))"], env=env,
                         capture_output=True, text=True).stdout
    assert out.strip() == "None"
    argv = jobs.train_argv(Path("-weird-runs") / "r1")  # a folder name that starts with '-' stays a value
    assert argv[-1].startswith("--output-dir=/") and not any(a.startswith("-weird") for a in argv)


def test_the_studio_home_is_its_owners_alone(tmp_path, monkeypatch):
    home = tmp_path / "home"
    monkeypatch.setenv("STUDIO_HOME", str(home))
    assert paths.prepare_home() == home
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    home.chmod(0o755)  # widened by hand: narrowed again on the next start
    paths.prepare_home()
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    child.atomic_write_text(home / "status.json", "{}")
    assert stat.S_IMODE((home / "status.json").stat().st_mode) == 0o600
