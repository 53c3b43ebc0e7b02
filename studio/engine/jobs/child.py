"""Child processes: how the studio starts a background job (training, evaluation, export), recognises it later, signals it,
and reads back what it wrote. ``training.py``, ``evaluation.py`` and ``export.py`` all go through here. Pure standard
library: the UI process imports it without torch.

A job's record (``status.json`` of a run, ``job.json`` of an evaluation or export) keeps the child's *stamp*: its pid,
its start time (clock ticks after boot, ``/proc/<pid>/stat`` field 22) and the boot id. A pid read from a file is adopted
or signalled only when a live process with that pid has the same start time and boot id; a record written before stamps
existed needs a command line that names the job instead. After a reboot or a long uptime the same pid belongs to someone
else's process, and that process is never signalled.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from studio.paths import repo_root

# the login of the web UI: a child (training, eval, export) has no use for it, and its log or a crash dump could leak it
SECRET_ENV = ("STUDIO_AUTH",)


def child_env(extra: dict | None = None) -> dict:
    """The environment of a child: this one, unbuffered, importing this checkout, without the studio's secrets."""
    env = {k: v for k, v in os.environ.items() if k not in SECRET_ENV}
    env["PYTHONUNBUFFERED"] = "1"
    # the child must import this checkout even when the studio is not pip-installed; cwd stays the user's, so relative
    # dataset paths mean the same thing in the UI and in the child
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(repo_root()), env.get("PYTHONPATH", "")) if p)
    env.update(extra or {})
    return env


def spawn(argv: list[str], stdout, stderr=subprocess.STDOUT, env: dict | None = None) -> subprocess.Popen:
    """Start ``argv`` (a list: never a shell) in a new session, so the child and everything it starts form one process
    group that ``signal_group`` reaches, and so a Ctrl-C in the studio's terminal does not hit the child."""
    return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr, env=env or child_env(),
                            start_new_session=True)


def python() -> str:
    return sys.executable


# -- recognising a process -------------------------------------------------------------------------------------------------


def _stat_fields(pid: int) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name (which may hold spaces and parentheses)."""
    try:
        text = Path(f"/proc/{int(pid)}/stat").read_text(encoding="utf-8", errors="replace")
    except (OSError, ValueError):
        return None
    return text.rsplit(")", 1)[-1].split()


def start_ticks(pid: int) -> int | None:
    """When the process started, in clock ticks after boot (None: no such process, or no /proc)."""
    fields = _stat_fields(pid)
    try:
        return int(fields[19]) if fields else None  # field 22 overall; [0] here is field 3 (state)
    except (IndexError, ValueError):
        return None


def boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text(encoding="utf-8").strip()
    except OSError:
        return ""


def stamp(pid: int) -> dict:
    """What a job record keeps so the process can be recognised later: {pid, pid_start, boot_id}."""
    return {"pid": int(pid), "pid_start": start_ticks(pid), "boot_id": boot_id()}


def alive(pid: int | None) -> bool:
    """A process with this pid exists and is not a zombie (whoever it is)."""
    if not pid:
        return False
    try:
        os.kill(int(pid), 0)
    except (ProcessLookupError, ValueError, OverflowError):
        return False
    except PermissionError:
        pass
    fields = _stat_fields(int(pid))
    return fields is None or fields[0] != "Z"


def command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{int(pid)}/cmdline").read_bytes().replace(b"\0", b" ").decode("utf-8", "replace")
    except (OSError, ValueError):
        return ""


def is_job(record: dict | None, *markers: str) -> bool:
    """True when the process a record names is still that job: same pid, start time and boot (a stamped record), or,
    for a record without a stamp, a live process whose command line holds every one of ``markers``."""
    record = record or {}
    pid = record.get("pid")
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 1 or not alive(pid):
        return False
    if record.get("pid_start") is not None:
        same_boot = not record.get("boot_id") or record.get("boot_id") == boot_id()
        return same_boot and start_ticks(pid) == record["pid_start"]
    cmd = command_line(pid)
    return bool(markers) and bool(cmd) and all(m in cmd for m in markers)


def signal_group(record: dict | None, sig: int, *markers: str) -> bool:
    """Send ``sig`` to the job's process group, only when ``is_job`` recognises it; True when sent."""
    if not is_job(record, *markers):
        return False
    try:
        os.killpg(int(record["pid"]), sig)  # spawn() made the child a group leader: its workers go too
    except (ProcessLookupError, PermissionError):
        return False
    return True


def terminate(record: dict | None, *markers: str) -> bool:
    return signal_group(record, signal.SIGTERM, *markers)


def descendants(pid: int) -> list[int]:
    """Every live process below ``pid`` (children, their children, ...), from /proc; [] without /proc."""
    parents: dict[int, list[int]] = {}
    try:
        entries = [e for e in os.listdir("/proc") if e.isdigit()]
    except OSError:
        return []
    for entry in entries:
        fields = _stat_fields(int(entry))
        if fields and len(fields) > 1 and fields[0] != "Z":
            parents.setdefault(int(fields[1]), []).append(int(entry))
    found, todo = [], [int(pid)]
    while todo:
        kids = parents.get(todo.pop(), [])
        found += kids
        todo += kids
    return found


def signal_tree(record: dict | None, sig: int, *markers: str, root: bool = True) -> bool:
    """``sig`` to a launcher job and every process below it, only when ``is_job`` recognises the launcher; True when
    sent. torchrun starts each rank in a session of its own, out of the launcher's process group, so ``signal_group``
    alone would miss them. ``root=False`` spares the launcher (it then sees its ranks end and exits by itself)."""
    if not is_job(record, *markers):
        return False
    top = int(record["pid"])
    below = descendants(top)  # before any signal: the ranks of a killed launcher are re-parented and lost to the walk
    groups = {top} if root else set()
    for pid in below:
        try:
            group = os.getpgid(pid)
        except OSError:
            continue
        if group != top:
            groups.add(group)  # a rank's own group: the rank and what it started
        elif not root:
            _kill(pid, sig)
    for group in groups:
        try:
            os.killpg(group, sig)
        except OSError:
            pass
    return True


def _kill(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except OSError:
        pass


def die_with_parent(sig: int = signal.SIGTERM) -> bool:
    """Ask Linux to send ``sig`` to this process when its parent ends (prctl PR_SET_PDEATHSIG): a rank whose launcher was
    killed stops after its step instead of training on where no Stop reaches it. False where it is not available."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(1, int(sig), 0, 0, 0) == 0  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return False


# -- files a job writes ----------------------------------------------------------------------------------------------------


def atomic_write_text(path: Path, text: str, mode: int = 0o600) -> None:
    """Write to a temp file, fsync, rename: a reader never sees half a file and a crash keeps the old one. The file is
    the owner's alone (``mode``): run folders hold configs, logs and data paths."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:  # a full disk: the old file stays whole, and no half temp file is left taking space
        tmp.unlink(missing_ok=True)
        raise


def write_json(path: Path, data: dict) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, ensure_ascii=False))


def read_json(path: Path) -> dict | None:
    """A JSON object from ``path``; None when it is missing, unreadable, not JSON or not an object."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def tail_lines(path: Path, lines: int = 40, max_bytes: int = 256 * 1024) -> list[str]:
    """The last non-blank lines of a log, reading at most ``max_bytes`` from its end (a child that printed 100 MB costs
    the reader no more than a small one). Progress bars rewrite one line with carriage returns: the last state is kept."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - max_bytes))
            data = fh.read()
    except OSError:
        return []
    text = data.decode("utf-8", errors="replace")
    cleaned = [ln.rstrip("\r").rsplit("\r", 1)[-1].rstrip() for ln in text.split("\n")]
    return [ln for ln in cleaned if ln.strip()][-lines:]
