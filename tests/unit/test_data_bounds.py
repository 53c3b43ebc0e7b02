"""Unit tier: dataset reading within bounds (issue #13, items 7 and 8): JSON Lines size checked while reading, encodings
named, JSON NaN and deep nesting refused, table cells plain, dataset_info.json entries typed and kept inside their folder,
and the data studio's find-and-replace bounded in size and time."""

from __future__ import annotations

import json
import re
import threading
import tracemalloc

import pytest
from tests.helpers import write_jsonl, write_rows

from studio.engine.data import dataset_info, findreplace
from studio.engine.data import textfile as T
from studio.engine.data.formats import DataError, read_raw_rows
from studio.engine.data.rowfile import RowFile

GOOD = {"instruction": "hi", "input": "", "output": "hello"}


def test_a_huge_jsonl_line_is_refused_without_reading_it_whole(tmp_path):
    path = tmp_path / "huge.jsonl"
    with open(path, "wb") as fh:
        fh.write((json.dumps(GOOD) + "\n").encode())
        fh.write(b'{"instruction": "' + b"x" * 8192)  # text first: the start of the file must not look binary
        fh.truncate(256 * 2**20)  # a 256 MB line, sparse on disk
    for read in (RowFile, read_raw_rows):
        tracemalloc.start()
        try:
            with pytest.raises(DataError, match=rf"^{path}: line 2: the row is over the 8 MB limit for one row"):
                read(path)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak < 32 * 2**20, f"{read.__name__} held {peak / 2**20:.0f} MB to refuse the line"


def test_lines_under_the_limit_keep_their_offsets(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + b'{"a": 1}\r\n\n{"a": "\xe2\x80\xa8"}\n')  # BOM, CRLF, blank, U+2028 inside text
    lines = list(T.jsonl_lines(path, limit=64))
    assert [(n, pos) for n, pos, _ in lines] == [(1, 3), (2, 13), (3, 14)]
    assert RowFile(path).rows() == [{"a": 1}, {"a": "\u2028"}]
    with pytest.raises(DataError, match="line 1: the row is over"):
        list(T.jsonl_lines(path, limit=4))


@pytest.mark.parametrize("head, expected", [
    (b'{"a": 1}', None),
    (b"\xef\xbb\xbf{}", None),
    ("{}".encode("utf-16"), "the file is UTF-16 text"),
    ("{}".encode("utf-32"), "the file is UTF-32 text"),
    ('{"a": "b"}'.encode("utf-16-le"), "looks like UTF-16 text"),
    ('{"a": "b"}'.encode("utf-16-be"), "looks like UTF-16 text"),
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "binary file"),
])
def test_encoding_problem(head, expected):
    problem = T.encoding_problem(head)
    assert (problem is None) if expected is None else (expected in problem)


@pytest.mark.parametrize("text, whole_file, message", [
    ('{"a": NaN}', False, "where: NaN is not a JSON value (write null for a missing value)"),
    ('[\n{"a": 1},\n{"a": Infinity}]', True, "where: line 3: Infinity is not a JSON value"),
    ('{"NaN": "NaN", "b": -Infinity}', True, "where: line 1: -Infinity is not a JSON value"),
    ("[" * 50_000 + "]" * 50_000, True, "where: lists/objects nested more than 100 levels deep"),
    ('{"a": 1,}', True, "where: line 1: invalid JSON (Expecting property name"),
    ('{"a": 1,}', False, "where: invalid JSON (Expecting property name"),  # a JSON Lines line: the caller names it
])
def test_loads_refuses_what_python_json_lets_through(text, whole_file, message):
    with pytest.raises(DataError) as exc:
        T.loads(text, "where", whole_file=whole_file)
    assert str(exc.value).startswith(message), str(exc.value)


def test_nesting_is_bounded_per_row(tmp_path):
    ok = {"a": json.loads("[" * 99 + "]" * 99)}  # 100 levels with the row itself
    deep = {"a": json.loads("[" * 100 + "]" * 100)}
    write_jsonl(tmp_path / "ok.jsonl", [GOOD, ok])
    assert len(RowFile(tmp_path / "ok.jsonl")) == 2
    write_jsonl(tmp_path / "deep.jsonl", [GOOD, deep])
    with pytest.raises(DataError, match=r"deep.jsonl: line 2: lists/objects nested more than 100"):
        RowFile(tmp_path / "deep.jsonl")
    (tmp_path / "deep.json").write_text(json.dumps([GOOD, GOOD, deep]))
    with pytest.raises(DataError, match=r"deep.json: row 3: lists/objects nested more than 100"):
        read_raw_rows(tmp_path / "deep.json")


def test_table_cells_become_plain_values_or_a_named_error(tmp_path):
    import datetime

    import numpy as np
    import pandas as pd

    frame = pd.DataFrame({"n": [1, 2], "f": [0.5, float("nan")], "when": pd.to_datetime(["2024-01-02", None]),
                          "tags": [np.array(["a", "b"]), np.array([], dtype=str)]})
    rows = T.table_rows(tmp_path / "t.parquet", frame)
    assert rows == [{"n": 1, "f": 0.5, "when": "2024-01-02T00:00:00", "tags": ["a", "b"]},
                    {"n": 2, "f": None, "when": None, "tags": []}]
    assert T.plain(datetime.date(2024, 1, 2)) == "2024-01-02"
    for bad, message in ((b"\x00", "binary data"), (float("inf"), "infinite"), (object(), "object values")):
        with pytest.raises(DataError, match=message):
            T.plain(bad)
    path = write_rows(tmp_path / "b.parquet", [dict(GOOD, output=b"\xff")])
    with pytest.raises(DataError, match=rf"^{path}: row 1: column 'output': holds binary data"):
        RowFile(path)


def test_csv_shape(tmp_path):
    path = tmp_path / "t.csv"
    T.check_csv_shape(path, 'a,b\n1,"x\ny"\n\n3,4\n')  # a quoted newline and a blank line are fine
    with pytest.raises(DataError, match=r"t.csv: line 4: 3 fields, but the header has 2"):
        T.check_csv_shape(path, "a,b\n1,2\n\n3,4,5\n")
    path.write_text("a,b\n" + "x" * 200_000 + ",y\n")  # a long cell is not a CSV error
    assert read_raw_rows(path)[0] == [{"a": "x" * 200_000, "b": "y"}]


# -- dataset_info.json ------------------------------------------------------------------------------------------------------


def folder_with(tmp_path, entries: dict):
    ds = tmp_path / "ds"
    ds.mkdir()
    write_jsonl(ds / "good.jsonl", [GOOD])
    (ds / "dataset_info.json").write_text(json.dumps(entries))
    return ds / "dataset_info.json"


def test_entry_types_are_checked(tmp_path):
    good = {"file_name": "good.jsonl", "formatting": "sharegpt", "columns": {"messages": "c"}, "tags": {"role_tag": "r"},
            "ranking": False, "hf_hub_url": "ignored/here", "num_samples": 3}
    dataset_info.check_entry(good, "e")
    for key, value, message in (("file_name", ["a"], "'file_name' must be text, got a list"),
                                ("ranking", 1, "'ranking' must be true or false, got a number"),
                                ("columns", {"prompt": None}, "'columns.prompt' must be text (a column or tag name), got null"),
                                ("kind", "image", "kind 'image' is not supported")):
        with pytest.raises(DataError, match="^" + re.escape(f"e: {message}")):
            dataset_info.check_entry(dict(good, **{key: value}), "e")


def test_file_name_stays_inside_the_folder(tmp_path):
    info = folder_with(tmp_path, {"ok": {"file_name": "good.jsonl"}, "sub": {"file_name": "sub"},
                                  "up": {"file_name": "sub/../../x.jsonl"}, "abs": {"file_name": str(tmp_path / "x.jsonl")},
                                  "link": {"file_name": "link.jsonl"}})
    write_jsonl(tmp_path / "x.jsonl", [GOOD])
    (info.parent / "link.jsonl").symlink_to(tmp_path / "x.jsonl")
    (info.parent / "sub").mkdir()
    (info.parent / "sub" / "inner.jsonl").symlink_to(info.parent / "good.jsonl")  # a link that stays inside is fine
    entries = json.loads(info.read_text())
    assert dataset_info.entry_files(info, "ok", entries["ok"]) == [info.parent / "good.jsonl"]
    assert dataset_info.entry_files(info, "sub", entries["sub"]) == [info.parent / "sub" / "inner.jsonl"]
    for name, message in (("up", "must be a path inside"), ("abs", "must be a path inside"), ("link", "leads outside")):
        with pytest.raises(DataError, match=rf"^{info}: entry '{name}': file_name .* {message}"):
            dataset_info.entry_files(info, name, entries[name])


# -- find and replace -------------------------------------------------------------------------------------------------------


@pytest.fixture
def workspace(tmp_path):
    from studio.engine.data.workspace import Workspace

    src = write_jsonl(tmp_path / "src.jsonl", [GOOD, {"instruction": "a" * 3000 + "b", "input": "", "output": "ok"}])
    return Workspace.create(src, root=tmp_path / "ws")


def test_catastrophic_regex_is_stopped_and_nothing_saved(workspace, monkeypatch):
    monkeypatch.setattr(findreplace, "TIME_BUDGET_S", 0.3)
    before = workspace.data_path.read_bytes()
    outcome = []

    def replace():
        try:
            workspace.replace_text("(a+)+$", "x", regex=True)
        except DataError as exc:
            outcome.append(str(exc))

    worker = threading.Thread(target=replace, daemon=True)  # `re` would backtrack for longer than the universe is old
    worker.start()
    worker.join(timeout=20)
    assert not worker.is_alive(), "find-and-replace did not stop"
    assert re.match(r"find '\(a\+\)\+\$': the pattern took over 0.3 s .* nothing was saved", outcome[0]), outcome
    assert workspace.data_path.read_bytes() == before and workspace.head.version == 1


@pytest.mark.parametrize("find, replace, regex, message", [
    ("x" * 1001, "y", False, "find: 1,001 characters, over the 1,000-character limit"),
    ("hi", "y" * 10_001, False, "replace: 10,001 characters, over the 10,000-character limit"),
    ("(", "y", True, r"find '\(': not a valid regular expression"),
    ("", "y", False, "nothing to find"),
    ("x*", "y" * 10_000, True, r"find 'x\*': the replacements would add over 8 MB to one value"),
])
def test_find_and_replace_limits(workspace, find, replace, regex, message):
    with pytest.raises(DataError, match=message):
        workspace.replace_text(find, replace, regex=regex, column="instruction" if "x*" in find else "")
    assert workspace.head.version == 1


def test_find_and_replace_still_replaces(workspace):
    out = workspace.replace_text(r"\bHI\b", "hey", regex=True, case_sensitive=False)
    assert out["replacements"] == 1 and workspace.view().row(0)["instruction"] == "hey"
    out = workspace.replace_text("a.b", "-", regex=False)  # a literal: the dot is not "any character"
    assert out["replacements"] == 0
