"""Editable working copies of datasets, with validation, atomic saves, a version history and undo.

Importing a dataset copies its file into ``$STUDIO_HOME/datasets/<name>/``; the original (an upload or the user's own file)
is never written to. A workspace folder holds::

    data.<ext>            the working copy, same file type as the source (what training reads)
    dataset_info.json     when the columns were mapped or the source was a dataset_info.json entry: the entry, with
                          LLaMA-Factory "columns", so `studio train --set data.datasets=[FOLDER]` loads it the same way
    versions/vNNNN.<ext>  one read-only file per version (the data file is a hard link to the newest; undo and restore
                          link an older one: unchanged bytes are not copied)
    versions/history.jsonl one line per version: version, parent, action, detail, time, rows
    versions/workspace.json name, working file, source path

The folder itself is the dataset spec training takes (``data.datasets=[FOLDER]``).

Every edit validates the rows it touches (normalised, and rendered through the chat template when a tokenizer is given),
refuses the whole edit with the row and reason when one fails, and saves as a new version in three atomic steps that a
crash at any point cannot leave inconsistent (``studio.engine.data.versions``). Undo restores the version the current one
was made from, as a new version: nothing is deleted by an undo. Version files are kept until the user prunes them
(``prune``). ``Workspace(folder, base=N)`` says the caller's view was read at version N: an edit, undo, restore or prune
through it is refused with ``StaleVersionError`` once another session has saved a newer version (an appended row is
kept: it overwrites nothing).
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import shutil
import time
from dataclasses import asdict
from pathlib import Path

from studio import paths
from studio.engine.data import dataset_info
from studio.engine.data.load import parse_spec
from studio.engine.data.formats import DataError
from studio.engine.access import FULL, Access
from studio.engine.data.findreplace import compile_find
from studio.engine.data.view import DatasetView, open_dataset, validate_row
from studio.engine.data.rowfile import RowFile, atomic_write, rows_writer
from studio.engine.data.versions import (VERSIONS, DiskFullError, StaleVersionError, Version, VersionStore, is_disk_full,
                                         start_history)

INFO = "dataset_info.json"
META = f"{VERSIONS}/workspace.json"  # inside versions/: a folder spec loads only the top-level data file


def workspaces_root() -> Path:
    return paths.studio_home() / "datasets"


def list_workspaces(root: Path | None = None) -> list[Path]:
    root = Path(root or workspaces_root())
    return sorted(p for p in root.iterdir() if (p / META).is_file()) if root.is_dir() else []


def _exclusive(method):
    """Run an edit holding the workspace lock: two tabs (or a tab and a script) never interleave read-modify-write; an
    interrupted earlier save is repaired first, so the edit starts from the recorded newest version."""
    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        with self._lock():
            if not self.store.consistent():
                self.store.reconcile()
            return method(self, *args, **kwargs)
    return wrapper


class Workspace:
    """One working copy. ``Workspace.create(spec)`` imports, ``Workspace(folder)`` opens an existing one."""

    def __init__(self, root: Path | str, base: int | None = None):
        self.root = Path(root)
        meta_path = self.root / META
        if not meta_path.is_file():
            raise DataError(f"{self.root}: not a data studio workspace (no {META})")
        self.meta = json.loads(meta_path.read_text(encoding="utf-8"))
        self.data_path = self.root / self.meta["file_name"]
        self.name = self.meta["name"]
        self.base = base  # the version the caller's view was read at (None: no check); follows this object's own saves
        self.store = VersionStore(self.data_path)
        self.repairs: list[str] = []  # what opening it repaired after an interrupted save (see versions.reconcile)
        if not self.store.consistent():
            with self._lock():
                if not self.store.consistent():
                    self.repairs = self.store.reconcile()

    # -- creating ---------------------------------------------------------------------------------------------------------

    @classmethod
    def create(cls, spec: str | Path, name: str = "", root: Path | None = None, mapping: dict | None = None,
               access: Access = FULL) -> "Workspace":
        """Copy the dataset behind ``spec`` (one file, or one dataset_info.json entry) into a new workspace
        (``access``: the caller's policy for reading ``spec``)."""
        view = open_dataset(spec, mapping, access=access)
        if len(view.files) != 1:
            raise DataError(f"{spec}: this dataset has {len(view.files)} files; open one file (or entry) to edit it")
        src = view.files[0].path
        root = Path(root or workspaces_root())
        folder = _unique(root, dataset_name(name or view.entry or src.stem))
        tmp = root / f".{folder.name}.creating"
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            _fill(tmp, folder.name, view, src, spec)
            tmp.rename(folder)  # the workspace appears whole or not at all
        except BaseException as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            if is_disk_full(exc):
                raise DiskFullError(f"{src}: disk full while importing it into {folder}: nothing was created") from exc
            raise
        return cls(folder)

    # -- reading ----------------------------------------------------------------------------------------------------------

    @property
    def spec(self) -> str:
        """What training and ``open_dataset`` take: the folder (its dataset_info.json, else its one data file)."""
        return str(self.root)

    @contextlib.contextmanager
    def _lock(self):
        try:
            import fcntl
        except ImportError:  # no flock (Windows): single-user use
            yield
            return
        with open(self.root / VERSIONS / ".lock", "w") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def view(self, mapping: dict | None = None) -> DatasetView:
        return open_dataset(self.spec, mapping)

    def history(self) -> list[Version]:
        return self.store.history()

    @property
    def head(self) -> Version:
        return self.store.head()

    def snapshot_path(self, version: int) -> Path:
        return self.store.path(version)

    def kept_versions(self) -> set[int]:
        """The versions whose files are still there (the others were pruned: their history lines stay)."""
        return set(self.store.files())

    # -- editing ----------------------------------------------------------------------------------------------------------

    @_exclusive
    def add_row(self, row: dict, at: int | None = None, tokenizer=None, cutoff_len: int = 4096) -> Version:
        view = self.view()
        self._check(view, row, len(view) if at is None else at, tokenizer, cutoff_len)
        items = list(range(len(view)))
        items.insert(len(items) if at is None else max(0, min(int(at), len(items))), row)
        return self._commit(view, items, "add", f"row {len(view) if at is None else at}", append=at is None)

    @_exclusive
    def add_rows(self, rows: list[dict], detail: str = "", tokenizer=None, cutoff_len: int = 4096) -> Version:
        """Append several rows as ONE version (e.g. the pairs of one arena vote); one bad row refuses them all."""
        if not rows:
            raise DataError(f"{self.data_path}: no rows to add; nothing was saved")
        view = self.view()
        for k, row in enumerate(rows):
            self._check(view, row, len(view) + k, tokenizer, cutoff_len)
        items: list = list(range(len(view))) + list(rows)
        return self._commit(view, items, "add", detail or f"rows {len(view)}-{len(items) - 1}", append=True)

    @_exclusive
    def update_row(self, index: int, row: dict, tokenizer=None, cutoff_len: int = 4096) -> Version:
        view = self.view()
        view.locate(index)
        self._check(view, row, index, tokenizer, cutoff_len)
        items: list = list(range(len(view)))
        items[index] = row
        return self._commit(view, items, "edit", f"row {index}")

    @_exclusive
    def delete_rows(self, indices: list[int]) -> Version:
        view = self.view()
        drop = set()
        for i in indices:
            view.locate(int(i))
            drop.add(int(i))
        if len(drop) >= len(view):
            raise DataError(f"{self.data_path}: cannot delete every row (a dataset needs at least one); nothing was saved")
        items = [i for i in range(len(view)) if i not in drop]
        return self._commit(view, items, "delete", "rows " + ", ".join(map(str, sorted(drop)[:20])))

    @_exclusive
    def duplicate_row(self, index: int) -> Version:
        view = self.view()
        view.locate(index)
        items: list = list(range(len(view)))
        items.insert(index + 1, view.row(index))
        return self._commit(view, items, "duplicate", f"row {index}")

    @_exclusive
    def replace_text(self, find: str, replace: str, column: str = "", regex: bool = False, case_sensitive: bool = True,
                     tokenizer=None, cutoff_len: int = 4096, dry_run: bool = False) -> dict:
        """Find and replace in every text value (or one column) of every row, e.g. ``{{NAME}}`` -> ``Nova``.

        Every changed row is validated; one failure refuses the whole replacement. Returns the counts and the version.
        The pattern is bounded in size and in time (this runs in the UI process): DataError past a limit, nothing saved.
        """
        pattern = compile_find(find, replace, regex=regex, case_sensitive=case_sensitive)
        view = self.view()
        items: list = []
        changed, count = [], 0
        for i, row in enumerate(view.iter_rows()):
            new, n = _replace_in(row, pattern, replace, column)
            if n:
                self._check(view, new, i, tokenizer, cutoff_len)
                items.append(new)
                changed.append(i)
                count += n
            else:
                items.append(i)
        out = {"rows_changed": len(changed), "replacements": count, "examples": changed[:10], "version": None}
        if changed and not dry_run:
            out["version"] = asdict(self._commit(view, items, "replace", f"{find!r} -> {replace!r} in {len(changed)} rows"))
        return out

    @_exclusive
    def set_mapping(self, mapping: dict) -> dict:
        """Apply ``{source column: role}`` and save it as this workspace's dataset_info.json entry (checked on row 1)."""
        rows = RowFile(self.data_path)
        first = rows.row(0)
        entry = dataset_info.entry_from_mapping(mapping, self.data_path.name, {c: first.get(c) for c in rows.columns})
        validate_row(first, dataset_info.spec_from_entry(entry))
        atomic_write(self.root / INFO, lambda fh: fh.write(_dumps({self.name: entry})))
        return entry

    # -- versions ---------------------------------------------------------------------------------------------------------

    @_exclusive
    def undo(self) -> Version:
        """Go back to the version the current one was made from (saved as a new version, so undo is never lossy)."""
        versions = {v.version: v for v in self.history()}
        head = self.head
        if head.parent == 0:
            raise DataError(f"{self.name}: nothing to undo (version {head.version} holds the imported rows)")
        target = versions[head.parent]
        return self._restore(target, "undo", parent=target.parent)

    @_exclusive
    def restore(self, version: int) -> Version:
        versions = {v.version: v for v in self.history()}
        if version not in versions:
            raise DataError(f"{self.name}: no version {version} (versions 1..{self.head.version})")
        return self._restore(versions[version], "restore", parent=self.head.version)

    def prunable(self, keep: int) -> list[int]:
        """The versions whose files ``prune(keep)`` would remove (what a UI shows before it asks)."""
        return self.store.prunable(keep)

    @_exclusive
    def prune(self, keep: int, expect: int | None = None) -> int:
        """Remove the files of all but the newest ``keep`` versions; returns how many it removed. Their history lines stay
        (restoring one says it was pruned). ``expect``: the count the user was shown; a different count (another session
        saved or pruned meanwhile) refuses, removing nothing."""
        self._check_base(append=False)
        gone = self.store.prunable(keep)
        if expect is not None and len(gone) != int(expect):
            raise StaleVersionError(f"{self.name}: the versions changed since you looked: keeping the newest {keep} now "
                                    f"removes {len(gone)}, not {expect}; nothing was removed", self.base or 0, self.head)
        return len(self.store.prune(keep))

    def _restore(self, target: Version, action: str, parent: int) -> Version:
        snap = self.snapshot_path(target.version)
        if not snap.is_file():
            raise DataError(f"{self.name}: version {target.version} was pruned (its file was removed; its history line "
                            f"stays); nothing was changed")
        return self._save(action, f"back to version {target.version}", target.rows, parent, source=snap)

    # -- internals --------------------------------------------------------------------------------------------------------

    def _check(self, view: DatasetView, row, index: int, tokenizer, cutoff_len: int) -> None:
        try:
            validate_row(row, view.formats[0] or _no_format(view), tokenizer, cutoff_len)
        except DataError as exc:
            raise DataError(f"{self.data_path.name}: row {index}: {exc}; nothing was saved") from None

    def _commit(self, view: DatasetView, items: list, action: str, detail: str, append: bool = False) -> Version:
        write = rows_writer(self.data_path, items, base=view.files[0])  # refuses rows the file type cannot hold
        return self._save(action, detail, len(items), self.head.version, write=write, append=append)

    def _save(self, action: str, detail: str, rows: int, parent: int, write=None, source: Path | None = None,
              append: bool = False) -> Version:
        """One new version (caller holds the lock); a full disk is a named error and leaves everything as it was."""
        self._check_base(append)
        try:
            version = self.store.commit(action, detail, rows, parent, write=write, source=source)
        except OSError as exc:
            if is_disk_full(exc):
                raise DiskFullError(f"{self.data_path}: disk full while saving {self.name} ({action}: {detail}): "
                                    "nothing was changed") from exc
            raise
        if self.base is not None:
            self.base = version.version
        return version

    def _check_base(self, append: bool) -> None:
        """Refuse an edit made from an older version than the newest: it would silently undo another session's save."""
        head = self.head
        if self.base is None or self.base == head.version or append:
            return
        raise StaleVersionError(f"{self.name}: changed since you loaded version {self.base}: version {head.version} "
                                f"({head.action}: {head.detail}) is the newest now; reload and make your change "
                                "again; nothing was saved", self.base, head)


def _no_format(view: DatasetView):
    raise DataError(view.format_error or "the format is unknown: map the columns first")


def _replace_in(value, pattern: re.Pattern, repl: str, column: str = "", top: bool = True):
    """(new value, number of replacements) for every string inside ``value`` (only ``column`` of a top-level row)."""
    if isinstance(value, str):
        return pattern.subn(lambda _m: repl, value)
    if isinstance(value, dict):
        out, n = {}, 0
        for k, v in value.items():
            if top and column and k != column:
                out[k] = v
                continue
            out[k], c = _replace_in(v, pattern, repl, "", False)
            n += c
        return out, n
    if isinstance(value, list):
        pairs = [_replace_in(v, pattern, repl, "", False) for v in value]
        return [p[0] for p in pairs], sum(p[1] for p in pairs)
    return value, 0


def _entry_for(view: DatasetView, file_name: str) -> dict | None:
    """The dataset_info.json entry a new workspace needs: the source's entry, the mapping, or none (detected format)."""
    if view.entry:
        folder = parse_spec(view.spec).path
        return dict(json.loads((folder / INFO).read_text(encoding="utf-8-sig"))[view.entry], file_name=file_name)
    if view.mapping:
        first = view.files[0].row(0)
        return dataset_info.entry_from_mapping(view.mapping, file_name, {c: first.get(c) for c in view.files[0].columns})
    return None


def _fill(tmp: Path, name: str, view: DatasetView, src: Path, spec) -> None:
    """A new workspace's files in ``tmp``: version 1 is the source's bytes, the data file a hard link to it."""
    suffix = src.suffix.lower()
    (tmp / VERSIONS).mkdir(parents=True)
    (tmp / VERSIONS / ".lock").touch()
    file_name = "data" + suffix
    first = tmp / VERSIONS / f"v0001{suffix}"
    shutil.copyfile(src, first)
    if os.name == "posix":
        os.chmod(first, 0o444)  # versions are never written in place (see versions.py)
    try:
        os.link(first, tmp / file_name)
    except OSError:
        shutil.copyfile(first, tmp / file_name)
    entry = _entry_for(view, file_name)
    if entry is not None:
        atomic_write(tmp / INFO, lambda fh: fh.write(_dumps({name: entry})))
    meta = {"name": name, "file_name": file_name, "source": str(src), "source_spec": str(spec),
            "entry": view.entry, "created": time.time()}
    atomic_write(tmp / META, lambda fh: fh.write(_dumps(meta)))
    start_history(tmp / VERSIONS, Version(1, 0, "import", str(src), time.time(), len(view)))


def _dumps(obj) -> bytes:
    return (json.dumps(obj, ensure_ascii=False, indent=2) + "\n").encode("utf-8")


def open_workspace(spec: str, base: int | None = None, access: Access = FULL) -> "Workspace | None":
    """The workspace behind a spec (its folder, ``#ENTRY`` ignored), or None when the spec is no editable copy.
    ``base``: the version the caller's rows were read at (its edits are refused once a newer one exists)."""
    folder = Path((spec or "").strip().split("#")[0]).expanduser()
    if access.confined:
        folder = access.path(folder, "dataset")
    return Workspace(folder, base=base) if (folder / META).is_file() else None


def dataset_name(text: str) -> str:
    """A workspace folder name from a user's name: letters (CJK too), digits, '.', '_', '-'; never '..' or a path."""
    return _slug(text)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.\-\u4e00-\u9fff]+", "_", text).strip("._") or "dataset"


def _unique(root: Path, name: str) -> Path:
    folder, k = root / name, 2
    while folder.exists():
        folder, k = root / f"{name}-{k}", k + 1
    return folder
