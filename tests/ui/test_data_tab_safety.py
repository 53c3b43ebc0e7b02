"""The Data tab keeps what the user made: two sessions editing one dataset (the second, working from an older version, is
refused with a message; an appended row is kept), a full disk during a save (named, nothing changed), an upload with a
taken name (saved under a new one, shown), pruning (the count shown before anything is removed). The tab's handler
functions are called directly, as the browser would call them; the tokenizer is the default model's (no model)."""

from __future__ import annotations

import errno
import json
import os
import stat

import pytest
from tests.helpers import TEST_ROOTS, write_jsonl

from studio.engine.data.workspace import Workspace
from studio.ui.context import AppContext
from studio.ui.panels import data_versions as dv
from studio.ui.tabs import data as data_tab

ROWS = [{"instruction": f"Say {i}.", "input": "", "output": f"{i}."} for i in range(4)]


@pytest.fixture
def ctx(tmp_path):
    c = AppContext.create(runs_root=tmp_path / "runs", start_jobs=False, allow_paths=TEST_ROOTS)
    c.uploads_root = tmp_path / "uploads"
    yield c
    c.close()


@pytest.fixture
def spec(tmp_path):
    return Workspace.create(write_jsonl(tmp_path / "a.jsonl", ROWS), root=tmp_path / "ws").spec


def load(ctx, spec: str) -> dict:
    """What the Load button gives a session: its last output is the version the rows were read at."""
    out = dv.tracked(ctx.access, data_tab._on_open)(spec, 10, "", "en")
    assert out[-1] == {"spec": spec, "version": Workspace(spec).head.version}
    return out[-1]


def edit(ctx, model, spec, seen, action="update", row=0, new=None, lang="en") -> list:
    text = json.dumps(new or {"instruction": "Q?", "input": "", "output": "A."})
    return data_tab._on_edit(ctx, action, spec, row, text, model, 1024, 1, 10, lang, seen=seen)


def test_two_sessions_editing_one_dataset_never_overwrite_each_other(ctx, spec, default_tokenizer_dir):
    model = str(default_tokenizer_dir)
    seen_a, seen_b = load(ctx, spec), load(ctx, spec)  # two browser tabs open version 1
    saved = edit(ctx, model, spec, seen_a, new={"instruction": "A's edit?", "input": "", "output": "A."})
    assert "Saved version 2 (edit: row 0)" in saved[1] and saved[6] == {"spec": spec, "version": 2}
    before = Workspace(spec).data_path.read_bytes()
    for action, lang in (("update", "en"), ("delete", "en"), ("undo", "en"), ("update", "zh")):
        refused = edit(ctx, model, spec, seen_b, action=action, row=1, lang=lang)
        assert not isinstance(refused[0], str)  # refused: the spec is not answered, the form keeps its text
        if lang == "en":
            assert "Another session changed this dataset since you loaded version 1: version 2 (edit: row 0) is the " \
                   "newest now" in refused[1] and "nothing was saved" in refused[1]
        else:
            assert "另一个会话修改了该数据集" in refused[1] and "未保存任何内容" in refused[1]
    restored = data_tab._on_edit(ctx, "restore", spec, 0, "", model, 1024, 1, 10, "en", 1, seen=seen_b)
    assert "Another session changed" in restored[1]
    form = data_tab._on_form_save(ctx, "update", spec, 0, model, 1024, 1, 10, "en",
                                  {"spec": spec, "row": 0, "format": "alpaca"}, "", "B's form?", "", "B.", *[None] * 8,
                                  seen=seen_b)
    assert "Another session changed" in form[1] and form[6] is False
    assert Workspace(spec).data_path.read_bytes() == before  # A's edit stands
    added = edit(ctx, model, spec, seen_b, action="add", new={"instruction": "B's row?", "input": "", "output": "B."})
    assert "Saved version 3 (add" in added[1]  # appending overwrites nothing: both edits are kept
    rows = Workspace(spec).view().rows()
    assert rows[0]["instruction"] == "A's edit?" and rows[-1]["instruction"] == "B's row?"
    seen_b = load(ctx, spec)  # B reloads, then its edit goes through
    assert "Saved version 4" in edit(ctx, model, spec, seen_b, row=1)[1]


def test_disk_full_in_the_data_tab_changes_nothing_and_says_so(ctx, spec, default_tokenizer_dir, monkeypatch):
    seen = load(ctx, spec)
    folder = Workspace(spec).root
    before = {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")
    with monkeypatch.context() as m:
        m.setattr(os, "fsync", disk_full)
        out = edit(ctx, str(default_tokenizer_dir), spec, seen)
    assert "The disk is full" in out[1] and "nothing was changed" in out[1] and not isinstance(out[0], str)
    assert {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()} == before
    assert "Saved version 2" in edit(ctx, str(default_tokenizer_dir), spec, seen)[1]  # space again: it saves


def test_an_upload_with_a_taken_name_gets_a_new_one(ctx, tmp_path):
    first, second = tmp_path / "g1" / "train.jsonl", tmp_path / "g2" / "train.jsonl"  # gradio: one temp folder each
    for path, rows in ((first, ROWS[:1]), (second, ROWS)):
        path.parent.mkdir()
        write_jsonl(path, rows)
    a = data_tab._on_upload(ctx, str(first), "en")
    b = data_tab._on_upload(ctx, str(second), "en")
    assert a[0] == str(ctx.uploads_root / "train.jsonl") and "Uploaded to" in a[1]
    assert b[0] == str(ctx.uploads_root / "train-1.jsonl") and "saved as" in b[1] and "not replaced" in b[1]
    assert b[2]["value"] == b[0] and b[0] in [value for _, value in b[2]["choices"]]
    assert len((ctx.uploads_root / "train.jsonl").read_text().splitlines()) == 1  # the first upload kept its rows
    assert stat.S_IMODE(os.stat(b[0]).st_mode) == 0o600
    bad = tmp_path / "g3" / "notes.md"
    bad.parent.mkdir()
    bad.write_text("hello")
    refused = data_tab._on_upload(ctx, str(bad), "en")
    assert "unsupported file type '.md'" in refused[1] and not (ctx.uploads_root / "notes.md").exists()


def test_prune_says_how_many_before_it_removes_and_refuses_when_things_changed(ctx, spec):
    ws = Workspace(spec)
    for k in range(5):
        ws.duplicate_row(0)
    seen = load(ctx, spec)
    msg, confirm, pending = dv.on_prune_preview(ctx.access, spec, 2, "en", seen)
    assert "removes the files of **4 older versions** (1, 2, 3, 4)" in msg and confirm["visible"] is True
    assert ws.kept_versions() == set(range(1, 7))  # the preview removed nothing
    ws.duplicate_row(0)  # another session saves meanwhile
    msg, frame, confirm, _ = dv.on_prune(ctx.access, spec, pending, "en")
    assert "Another session changed" in msg and ws.kept_versions() == set(range(1, 8)) and confirm["visible"] is False
    msg, confirm, pending = dv.on_prune_preview(ctx.access, spec, 2, "en", load(ctx, spec))
    msg, frame, confirm, pending = dv.on_prune(ctx.access, spec, pending, "en")
    assert msg == "Removed the files of 5 versions; the newest 2 are kept." and pending == {}
    assert ws.kept_versions() == {6, 7} and frame["file"].tolist() == ["kept", "kept"] + ["pruned"] * 5
    assert "Nothing to prune" in dv.on_prune_preview(ctx.access, spec, 2, "en", load(ctx, spec))[0]
    assert "Only an editable copy" in dv.on_prune_preview(ctx.access, str(ws.data_path.parent.parent / "a.jsonl"), 2, "en")[0]
