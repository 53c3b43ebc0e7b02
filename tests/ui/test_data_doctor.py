"""The Data tab's doctor panel: examine, fix as an undoable edit of the editable copy, the first batch; outside paths refused."""

from __future__ import annotations

import pytest

from studio.ui.panels import data_doctor
from studio.ui.tabs import data as data_tab
from tests.helpers import web_context, write_jsonl

ROWS = [{"instruction": f"Name the number {i}.", "input": "", "output": f"The number {i}, written out in words."}
        for i in range(12)]


@pytest.fixture
def ctx(tmp_path):
    c = web_context(tmp_path / "runs")
    yield c
    c.close()


def test_examine_fix_and_undo(ctx, tmp_path, tiny_model_dir):
    rows = ROWS + [dict(ROWS[2]), {"instruction": "Say it.", "input": "", "output": "  "}]
    spec = str(write_jsonl(tmp_path / "d.jsonl", rows))
    summary, flags = data_doctor.on_examine(ctx, spec, "", 0.8, 2, str(tiny_model_dir), 256, "en")
    assert "14 rows examined" in summary and "Jaccard ≥ 0.8" in summary
    table = dict(zip(flags.iloc[:, 0], flags.iloc[:, 2]))
    assert table["exact duplicates (normalised text)"] == "12" and table["empty or whitespace turns"] == "13"
    fix = lambda what, s, seen: data_doctor.on_fix(ctx, what, s, 0.8, 2, 1, 10, "en", seen, editable=data_tab._editable,
                                                   refresh=data_tab._refresh)
    out = fix("duplicates", spec, {})
    new_spec, message, info, table_rows, page, versions, seen = out
    assert new_spec != spec and "Removed 1 rows as version 2" in message and len(versions) == 2
    assert (tmp_path / "d.jsonl").read_text().count("\n") == 14  # the original file is never written
    assert fix("duplicates", new_spec, seen)[1] == "Nothing to remove."
    out = fix("empty", new_spec, seen)
    assert "version 3" in out[1]
    undone = data_tab._on_edit(ctx, "undo", new_spec, 0, "", "default", 256, 1, 10, "en", seen=out[6])
    assert "version 4" in undone[1] and len(undone[5]) == 4  # undo is a new version; nothing lost


def test_first_batch_is_shown_with_boundaries(ctx, tmp_path, tiny_model_dir):
    spec = str(write_jsonl(tmp_path / "d.jsonl", ROWS))
    info, page = data_doctor.on_batch(ctx, spec, str(tiny_model_dir), 128, 4, "en")
    assert "4 rows" in info and "padding-free" in info
    assert page.count("▌") == 4 and "ts-trained" in page and "The number" in page


def test_outside_paths_are_refused(ctx, tmp_path, tiny_model_dir):
    spec = str(write_jsonl(tmp_path / "d.jsonl", ROWS))
    with pytest.warns(UserWarning, match="outside the folders"):
        summary, flags = data_doctor.on_examine(ctx, spec, "/etc/passwd", 0.8, 2, "", 256, "en")
    assert "outside the folders" in summary and flags is None
    with pytest.warns(UserWarning, match="outside the folders"):
        info, page = data_doctor.on_batch(ctx, "/etc/passwd", str(tiny_model_dir), 128, 4, "en")
    assert page == ""
