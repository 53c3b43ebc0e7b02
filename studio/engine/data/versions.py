"""A workspace's versions: one file per version plus ``versions/history.jsonl``, consistent with the data file across a
crash at any point of a save, an undo or a restore.

A save runs three steps, each atomic on its own, in this order:

1. the new version's file ``versions/vNNNN.<ext>``: a temp file written, fsynced and renamed (or, for undo and restore,
   a hard link to the older version's file), then made read-only;
2. its line in ``versions/history.jsonl``, appended and fsynced: a version exists once its complete line does;
3. the data file: a hard link to the version file, renamed over ``data.<ext>``.

A failure inside the process undoes the steps already done (the history is cut back to its old length, the new version
file removed), so an error means nothing changed. A crash leaves a state ``reconcile`` repairs (it runs, holding the
workspace lock, when a workspace is opened and before every save): a version file without its history line is removed
(that save never happened), a recorded version whose data file was not yet replaced is completed (the data file becomes
that version), a torn last history line is cut, temp files are removed. A data file that matches no version (changed
outside the studio) is kept as a new version, ``outside edit``: nothing is lost. Version files are read-only (the data
file is one of their hard links, so a program writing into ``data.<ext>`` in place fails instead of rewriting a version)
and stay until the user prunes them (``prune``).
"""

from __future__ import annotations

import errno
import filecmp
import json
import os
import re
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from studio.engine.data.formats import DataError
from studio.engine.data.rowfile import RowFile, atomic_write, fsync_dir

VERSIONS, HISTORY = "versions", "history.jsonl"
TEMP = re.compile(r"^\..+\.tmp-\d+$")  # atomic_write's and _install's temp files: `.NAME.tmp-PID`
DISK_FULL = (errno.ENOSPC, errno.EDQUOT)
# a hard link the filesystem cannot make: fall back to a copy (any other error is a real failure)
NO_LINK = {errno.EPERM, errno.EXDEV, errno.EMLINK, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS}


@dataclass
class Version:
    version: int
    parent: int  # the version this one was made from (0: none)
    action: str
    detail: str
    time: float
    rows: int


class StaleVersionError(DataError):
    """An edit made from an older version than the newest (another tab or session saved meanwhile): refused."""

    def __init__(self, message: str, base: int, head: Version):
        super().__init__(message)
        self.base, self.head = base, head


class DiskFullError(DataError):
    """The disk filled up during a save; everything written so far was removed, nothing was changed."""


class VersionStore:
    """The versions of one data file (``data.<ext>`` beside ``versions/``). Callers hold the workspace lock to write."""

    def __init__(self, data_path: Path):
        self.data_path = Path(data_path)
        self.folder = self.data_path.parent / VERSIONS
        self.history_path = self.folder / HISTORY

    # -- reading ----------------------------------------------------------------------------------------------------------

    def history(self) -> list[Version]:
        """Every recorded version, oldest first (a torn last line, left by a crash mid-append, is not a version)."""
        try:
            raw = self.history_path.read_bytes()
        except FileNotFoundError:
            return []
        out = []
        for n, line in enumerate(raw.split(b"\n")[:-1], start=1):  # the last piece is b"" or a torn line
            if not line.strip():
                continue
            try:
                out.append(Version(**json.loads(line)))
            except (ValueError, TypeError) as exc:
                raise DataError(f"{self.history_path}: line {n}: not a version record ({exc})") from None
        return out

    def head(self) -> Version:
        history = self.history()
        if not history:
            raise DataError(f"{self.history_path}: no versions recorded")
        return history[-1]

    def path(self, version: int) -> Path:
        return self.folder / f"v{version:04d}{self.data_path.suffix}"

    def files(self) -> dict[int, Path]:
        """{version: its file} for every version file present (pruned versions have none)."""
        pattern = re.compile(rf"^v(\d+){re.escape(self.data_path.suffix)}$")
        found = (pattern.match(p.name) for p in self.folder.iterdir()) if self.folder.is_dir() else ()
        return {int(m.group(1)): self.folder / m.group(0) for m in found if m}

    def consistent(self) -> bool:
        """Cheap check that no save was interrupted: the data file is the newest version's file, nothing else pending."""
        try:
            if not self.history_path.read_bytes().endswith(b"\n") or self._temps():
                return False
            head = self.head().version
            return max(self.files(), default=0) == head and _same(self.data_path, self.path(head))
        except (OSError, DataError):
            return False

    # -- saving -----------------------------------------------------------------------------------------------------------

    def commit(self, action: str, detail: str, rows: int, parent: int, write=None, source: Path | None = None) -> Version:
        """Save a new version: its content from ``write(fh)``, or the bytes of ``source`` (an older version's file)."""
        new = Version(self.head().version + 1, parent, action, detail, time.time(), rows)
        snap = self.path(new.version)
        size = self.history_path.stat().st_size
        done = []
        try:
            if source is not None:
                _link_or_copy(Path(source), snap)
            else:
                atomic_write(snap, write)
            done.append("file")
            _read_only(snap)
            done.append("history")  # before the append: a failure inside it may already have written the line
            _append_line(self.history_path, new)
            self._install(snap)
        except BaseException:
            self._undo(done, snap, size)
            raise
        return new

    def _undo(self, done: list, snap: Path, size: int) -> None:
        """Take back a failed save's steps, history first: should that fail too, ``reconcile`` completes the save."""
        try:
            if "history" in done:
                os.truncate(self.history_path, size)
            if "file" in done:
                snap.unlink(missing_ok=True)
        except OSError:
            pass

    def _install(self, snap: Path) -> None:
        """The data file becomes ``snap`` (a hard link renamed over it: readers see the old file or the new one)."""
        tmp = self.data_path.with_name(f".{self.data_path.name}.tmp-{os.getpid()}")
        try:
            tmp.unlink(missing_ok=True)
            _link_or_copy(snap, tmp)
            os.replace(tmp, self.data_path)
        except BaseException:
            _quietly(tmp.unlink, missing_ok=True)
            raise
        fsync_dir(self.data_path.parent)

    # -- repairing --------------------------------------------------------------------------------------------------------

    def reconcile(self) -> list[str]:
        """Finish or undo what an interrupted save left (see the module docstring); returns what it did, one line each."""
        notes = self._cut_torn_line() + self._remove_temps()
        history = self.history()
        if not history:
            raise DataError(f"{self.history_path}: no versions recorded (the workspace is damaged)")
        head = history[-1]
        for version, path in sorted(self.files().items()):
            if version > head.version:
                path.unlink()
                notes.append(f"removed {path.name}: its save was interrupted before it was recorded")
        snap = self.path(head.version)
        if _same(self.data_path, snap):
            return notes
        if snap.is_file() and not self.data_path.exists():
            self._install(snap)
            return notes + [f"{self.data_path.name} was missing: restored version {head.version}"]
        prev = history[-2] if len(history) > 1 else None
        if snap.is_file() and prev is not None and _same(self.data_path, self.path(prev.version)):
            self._install(snap)
            return notes + [f"finished the interrupted save of version {head.version}"]
        if not self.data_path.exists():
            raise DataError(f"{self.data_path}: the data file and version {head.version}'s file are both missing")
        try:
            rows = len(RowFile(self.data_path))
        except DataError:
            rows = 0  # kept all the same: it is the user's content
        def copy(fh):  # a copy, not a link: the data file may be a link to a file that is not the studio's
            with open(self.data_path, "rb") as src:
                shutil.copyfileobj(src, fh)

        v = self.commit("outside edit", f"{self.data_path.name} differed from version {head.version}", rows, head.version,
                        write=copy)
        return notes + [f"{self.data_path.name} was changed outside the studio: kept as version {v.version}"]

    def _cut_torn_line(self) -> list[str]:
        raw = self.history_path.read_bytes() if self.history_path.is_file() else b"\n"
        if raw.endswith(b"\n") or not raw:
            return []
        os.truncate(self.history_path, raw.rfind(b"\n") + 1)
        return [f"cut a torn last line of {HISTORY} (an interrupted save)"]

    def _temps(self) -> list[Path]:
        folders = (self.data_path.parent, self.folder)
        return [p for d in folders if d.is_dir() for p in d.iterdir() if TEMP.match(p.name)]

    def _remove_temps(self) -> list[str]:
        temps = self._temps()
        for p in temps:
            p.unlink(missing_ok=True)
        return [f"removed the temp file {p.name}" for p in temps]

    # -- pruning ----------------------------------------------------------------------------------------------------------

    def prunable(self, keep: int) -> list[int]:
        """The versions whose files ``prune(keep)`` removes: all but the newest ``keep`` that still have one."""
        if not isinstance(keep, int) or isinstance(keep, bool) or keep < 1:
            raise DataError(f"keep={keep!r}: must be a whole number >= 1 (the newest version is always kept)")
        head = self.head().version
        have = sorted(v for v in self.files() if v <= head)
        return have[:-keep] if len(have) > keep else []

    def prune(self, keep: int) -> list[int]:
        """Remove the files of all but the newest ``keep`` versions (their history lines stay); returns their numbers."""
        gone = self.prunable(keep)
        for v in gone:
            self.path(v).unlink(missing_ok=True)
        fsync_dir(self.folder)
        return gone


def start_history(folder: Path, first: Version) -> None:
    """The history of a new workspace (``folder`` is its ``versions/``)."""
    _append_line(Path(folder) / HISTORY, first)


def is_disk_full(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in DISK_FULL


def _append_line(path: Path, version: Version) -> None:
    line = (json.dumps(asdict(version), ensure_ascii=False) + "\n").encode("utf-8")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        if os.write(fd, line) != len(line):  # a short write is a torn line: undone by the caller, cut by reconcile
            raise OSError(errno.ENOSPC, f"{path}: short write")
        os.fsync(fd)
    finally:
        os.close(fd)


def _link_or_copy(src: Path, dest: Path) -> None:
    """``dest`` as a new hard link to ``src`` (never replacing a file), or a copy where the filesystem has no links."""
    try:
        os.link(src, dest)
        return
    except OSError as exc:
        if exc.errno not in NO_LINK:
            raise
    if dest.exists():
        raise FileExistsError(errno.EEXIST, "file exists", str(dest))

    def copy(fh):
        with open(src, "rb") as s:
            shutil.copyfileobj(s, fh)

    atomic_write(dest, copy)


def _read_only(path: Path) -> None:
    if os.name == "posix":
        _quietly(os.chmod, path, 0o444)


def _same(a: Path, b: Path) -> bool:
    """Same content: the same file (the usual case, a hard link), else equal bytes."""
    try:
        return os.path.samefile(a, b) or filecmp.cmp(a, b, shallow=False)
    except OSError:
        return False


def _quietly(fn, *args, **kwargs) -> None:
    try:
        fn(*args, **kwargs)
    except OSError:
        pass
