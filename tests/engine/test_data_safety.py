"""Nothing the user made is lost (data side): a crash at any step of a save, undo or restore is repaired when the
workspace is next opened; a full disk changes nothing and says so; an edit from an older version than the newest is
refused (an appended row is kept); versions stay until the user prunes them; uploads never replace a file.

Run: ``.venv/bin/python -m pytest tests/engine/test_data_safety.py`` (no model, a few seconds).
"""

from __future__ import annotations

import argparse
import errno
import os
import stat
import threading
from pathlib import Path

import pytest
from tests.helpers import write_jsonl

from studio.engine.data import workspace as workspace_module
from studio.engine.data.formats import DataError
from studio.engine.data.uploads import save_upload
from studio.engine.data.versions import TEMP, DiskFullError, StaleVersionError
from studio.engine.data.workspace import Workspace

ROWS = [{"instruction": f"Say {i}.", "input": "", "output": f"{i}."} for i in range(4)]
NEW = {"instruction": "New?", "input": "", "output": "Yes."}
OPS = {  # each runs on a workspace at version 3 (import, edit row 0, add a row)
    "edit": lambda ws: ws.update_row(1, NEW),
    "delete": lambda ws: ws.delete_rows([2]),
    "replace": lambda ws: ws.replace_text("Say", "Tell"),
    "undo": lambda ws: ws.undo(),
    "restore": lambda ws: ws.restore(1),
}


def make_workspace(folder: Path) -> Workspace:
    ws = Workspace.create(write_jsonl(folder.parent / f"{folder.name}.jsonl", ROWS), root=folder)
    ws.update_row(0, {"instruction": "Edited?", "input": "", "output": "Edited."})
    ws.add_row({"instruction": "Added?", "input": "", "output": "Added."})
    return ws


def files_of(ws: Workspace) -> dict[int, bytes]:
    return {v: p.read_bytes() for v, p in ws.store.files().items()}


def check_consistent(ws: Workspace) -> None:
    """The data file is the newest recorded version; every version file has its history line; no temp file is left."""
    history = [v.version for v in ws.history()]
    assert history == list(range(1, len(history) + 1))
    assert set(ws.store.files()) == set(history), "a version file without a history line, or a line without its file"
    assert ws.data_path.read_bytes() == ws.snapshot_path(history[-1]).read_bytes()
    assert not [p for d in (ws.root, ws.root / "versions") for p in d.iterdir() if TEMP.match(p.name)]


class Faults:
    """Make the ``fail_at``-th filesystem step of a save raise, as a crash there would: os.replace / link / fsync / write
    / truncate / unlink, and the writing of a version file's rows. ``power``: every later step fails too (nothing the
    code does to clean up after the fault reaches the disk), else only that one (an error the process survives)."""

    NAMES = ("replace", "link", "fsync", "write", "truncate", "unlink", "rename")

    def __init__(self, monkeypatch, fail_at: int = 0, power: bool = False, exc=None):
        self.calls, self.fail_at, self.power, self.fired = 0, fail_at, power, False
        self.exc = exc or (lambda: OSError(errno.EIO, f"injected crash at step {fail_at}"))
        for name in self.NAMES:
            monkeypatch.setattr(os, name, self._wrap(getattr(os, name)))
        rows_writer = workspace_module.rows_writer

        def counted_rows_writer(*args, **kwargs):
            write = rows_writer(*args, **kwargs)

            def half_then_maybe_fail(fh):
                self._step()
                write(fh)
            return half_then_maybe_fail
        monkeypatch.setattr(workspace_module, "rows_writer", counted_rows_writer)

    def _step(self) -> None:
        if self.fired and self.power:
            raise OSError(errno.EIO, "the power is off")
        self.calls += 1
        if self.calls == self.fail_at:
            self.fired = True
            raise self.exc()

    def _wrap(self, fn):
        def run(*args, **kwargs):
            self._step()
            return fn(*args, **kwargs)
        return run


@pytest.mark.parametrize("op", list(OPS))
def test_a_crash_at_any_step_is_repaired_when_the_workspace_is_opened(tmp_path, monkeypatch, op):
    twin = make_workspace(tmp_path / "twin")
    with monkeypatch.context() as m:
        counter = Faults(m)
        OPS[op](twin)
    steps = counter.calls
    assert steps >= 6  # version file, history line, data file: each written and synced
    after_rows = twin.view().rows()
    for power in (False, True):
        for k in range(1, steps + 1):
            ws = make_workspace(tmp_path / f"{op}-{power}-{k}")
            before_rows, before_files = ws.view().rows(), files_of(ws)
            raised = False
            with monkeypatch.context() as m:
                Faults(m, fail_at=k, power=power)
                try:
                    OPS[op](ws)
                except OSError:
                    raised = True
            again = Workspace(ws.root)  # reopening repairs whatever the crash left
            check_consistent(again)
            rows = again.view().rows()
            assert rows in (before_rows, after_rows), f"step {k}: rows lost or mixed up"
            assert {v: b for v, b in files_of(again).items() if v in before_files} == before_files  # old versions intact
            if not raised:
                assert rows == after_rows and again.head.version == 4
            elif not power:  # the process survived the error: it took its steps back, nothing changed
                assert rows == before_rows and again.head.version == 3 and again.repairs == []
            again.add_row(NEW)  # and it goes on working
            check_consistent(Workspace(ws.root))


def test_an_interrupted_save_is_finished_and_an_outside_edit_is_kept(tmp_path):
    ws = make_workspace(tmp_path / "ws")
    head = ws.head.version
    # a crash after the history line of version 4 and before the data file was replaced
    v4 = ws.snapshot_path(head + 1)
    v4.write_bytes(ws.snapshot_path(1).read_bytes())
    with open(ws.store.history_path, "a") as fh:
        fh.write('{"version": 4, "parent": 3, "action": "edit", "detail": "row 0", "time": 0, "rows": 4}\n')
    (ws.root / ".data.jsonl.tmp-999").write_text("half")
    again = Workspace(ws.root)
    assert again.head.version == 4 and "finished the interrupted save of version 4" in again.repairs
    assert again.view().rows() == ROWS
    check_consistent(again)
    # a program replaced the data file: its rows become a version of their own, nothing is lost
    ws.data_path.unlink()
    write_jsonl(ws.data_path, ROWS[:2])
    again = Workspace(ws.root)
    assert again.head.action == "outside edit" and again.head.version == 5 and again.view().rows() == ROWS[:2]
    check_consistent(again)
    assert again.undo().version == 6 and again.view().rows() == ROWS
    # version files (and so the data file, one of their links) are read-only: writing into it in place fails
    assert not os.stat(again.data_path).st_mode & stat.S_IWUSR
    # a torn last history line (a crash mid-append) is cut
    with open(again.store.history_path, "a") as fh:
        fh.write('{"version": 7, "par')
    torn = Workspace(ws.root)
    assert torn.head.version == 6 and any("torn" in r for r in torn.repairs)
    check_consistent(torn)


def disk_full(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def tree(folder: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}


@pytest.mark.parametrize("where", ["rows", "fsync", "write", "link", "replace"])
def test_disk_full_during_a_save_changes_nothing_and_names_it(tmp_path, monkeypatch, where):
    """ENOSPC at each place a save can meet it: writing the rows, syncing, appending the history line, linking, renaming."""
    ws = make_workspace(tmp_path / "ws")
    before = tree(ws.root)
    rows_writer = workspace_module.rows_writer

    def half_then_full(*args, **kwargs):
        write = rows_writer(*args, **kwargs)

        def run(fh):
            fh.write(b'{"instruction": "half')
            disk_full()
        return run if write else None
    for op in ("edit", "undo"):
        if op == "undo" and where == "rows":
            continue  # an undo links an existing version's file: it writes no rows
        with monkeypatch.context() as m:
            if where == "rows":
                m.setattr(workspace_module, "rows_writer", half_then_full)
            else:
                m.setattr(os, where, disk_full)
            with pytest.raises(DiskFullError, match=r"data.jsonl: disk full while saving ws \(.*\): nothing was changed"):
                OPS[op](ws)
        assert tree(ws.root) == before
        check_consistent(Workspace(ws.root))


def test_disk_full_while_importing_creates_nothing(tmp_path, monkeypatch):
    src = write_jsonl(tmp_path / "a.jsonl", ROWS)
    original = src.read_bytes()
    with monkeypatch.context() as m:
        m.setattr(os, "fsync", disk_full)
        with pytest.raises(DiskFullError, match=r"a.jsonl: disk full while importing it .*nothing was created"):
            Workspace.create(src, root=tmp_path / "ws")
    assert list((tmp_path / "ws").iterdir()) == [] and src.read_bytes() == original


def test_an_edit_from_an_older_version_is_refused_and_an_appended_row_is_kept(tmp_path):
    root = make_workspace(tmp_path / "ws").root
    a, b = Workspace(root, base=3), Workspace(root, base=3)  # two sessions that loaded version 3
    a.update_row(0, NEW)
    before = {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}
    for name, op in [("edit", lambda ws: ws.update_row(1, NEW)), ("delete", lambda ws: ws.delete_rows([0])),
                     ("duplicate", lambda ws: ws.duplicate_row(0)), ("replace", lambda ws: ws.replace_text("Say", "x")),
                     ("undo", lambda ws: ws.undo()), ("restore", lambda ws: ws.restore(1)),
                     ("insert", lambda ws: ws.add_row(NEW, at=0)), ("prune", lambda ws: ws.prune(1))]:
        with pytest.raises(StaleVersionError, match=r"changed since you loaded version 3: version 4 \(edit: row 0\) is the "
                                                    r"newest now; reload .*nothing was (saved|removed)"):
            op(b)
        assert {p: p.read_bytes() for p in root.rglob("*") if p.is_file()} == before, name
    added = b.add_row({"instruction": "B?", "input": "", "output": "B."})  # appending overwrites nothing: kept
    rows = Workspace(root).view().rows()
    assert added.version == 5 and rows[0] == NEW and rows[-1]["instruction"] == "B?"
    assert a.base == 4 and b.base == 5  # each object follows its own saves
    with pytest.raises(StaleVersionError):
        a.update_row(1, NEW)
    assert Workspace(root, base=5).update_row(1, NEW).version == 6


def test_versions_are_kept_until_the_user_prunes_them(tmp_path, capsys):
    ws = make_workspace(tmp_path / "ws")
    for k in range(37):
        ws.update_row(0, {"instruction": f"Edit {k}?", "input": "", "output": f"{k}."})
    assert ws.head.version == 40 and ws.kept_versions() == set(range(1, 41))  # no automatic pruning
    assert ws.prunable(10) == list(range(1, 31))
    with pytest.raises(DataError, match="keep=0: must be a whole number >= 1"):
        ws.prune(0)
    with pytest.raises(StaleVersionError, match="keeping the newest 10 now removes 30, not 29; nothing was removed"):
        ws.prune(10, expect=29)
    assert len(ws.kept_versions()) == 40
    assert cli(["data", "prune", str(ws.root), "--keep", "10", "--dry-run"]) == 0
    assert "would remove 30 version file(s) (versions 1, 2, 3" in capsys.readouterr().out
    assert len(ws.kept_versions()) == 40
    assert cli(["data", "prune", str(ws.root), "--keep", "10"]) == 0
    assert "removed 30 version file(s)" in capsys.readouterr().out
    assert ws.kept_versions() == set(range(31, 41)) and len(ws.history()) == 40  # history lines stay
    with pytest.raises(DataError, match="version 5 was pruned .*nothing was changed"):
        ws.restore(5)
    assert ws.prune(10) == 0 and ws.prune(1) == 9 and ws.kept_versions() == {40}
    check_consistent_pruned(ws)
    assert cli(["data", "prune", str(ws.root), "--keep", "0"]) == 2
    assert "keep=0" in capsys.readouterr().err
    assert cli(["data", "prune", str(tmp_path), "--keep", "3"]) == 2
    assert "not a data studio workspace" in capsys.readouterr().err


def check_consistent_pruned(ws: Workspace) -> None:
    head = ws.head.version
    assert ws.data_path.read_bytes() == ws.snapshot_path(head).read_bytes()
    assert Workspace(ws.root).repairs == []


def cli(argv: list[str]) -> int:
    from studio.commands import data as data_cmd

    parser = argparse.ArgumentParser(prog="studio")
    data_cmd.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return args.run(args)


def test_an_upload_never_replaces_a_file(tmp_path, monkeypatch):
    uploads = tmp_path / "uploads"
    made = []
    for k in range(3):
        src = write_jsonl(tmp_path / f"src{k}.jsonl", ROWS[: k + 1])
        made.append(save_upload(src, uploads, "train.jsonl"))
    assert [p.name for p in made] == ["train.jsonl", "train-1.jsonl", "train-2.jsonl"]
    assert [len(p.read_text().splitlines()) for p in made] == [1, 2, 3]  # each kept its own rows
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in made)
    src = write_jsonl(tmp_path / "x.jsonl", ROWS)
    assert save_upload(src, uploads, "../../etc/My Data (1).JSONL").name == "My_Data_1.jsonl"
    assert save_upload(src, uploads, "数据.csv").name == "数据.csv"
    with pytest.raises(DataError, match=r"evil.sh: unsupported file type '.sh'"):
        save_upload(src, uploads, "evil.sh")
    with monkeypatch.context() as m:
        m.setattr(os, "fsync", disk_full)
        with pytest.raises(DataError, match=r"train.jsonl: disk full while saving the upload .*nothing was saved"):
            save_upload(src, uploads, "train.jsonl")
    assert sorted(p.name for p in uploads.iterdir()) == ["My_Data_1.jsonl", "train-1.jsonl", "train-2.jsonl",
                                                          "train.jsonl", "数据.csv"]
    results: list[Path] = []
    threads = [threading.Thread(target=lambda: results.append(save_upload(src, uploads, "same.jsonl"))) for _ in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert len({p.name for p in results}) == 8  # eight uploads of one name at once: eight files
