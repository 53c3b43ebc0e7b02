"""Row storage for the data studio: a lazy row index over dataset files and atomic, type-preserving saves.

JSON Lines files are indexed in one streaming pass (byte offset of every line, each line checked as JSON); a page of rows
is then read by seeking, so a 100k-row file opens in about a second and only the requested rows are parsed. JSON arrays,
CSV and Parquet are read whole (json / pandas), which is fine at the sizes those formats are used for.

Saving writes a temporary file in the destination folder, fsyncs it and ``os.replace``s it over the target: a crash
leaves either the old file or the new one, never a half-written one. Pure Python + pandas: no torch.
"""

from __future__ import annotations

import json
import os
from array import array
from pathlib import Path

from studio.engine.data.formats import SUFFIXES, DataError, read_raw_rows
from studio.engine.data.textfile import MAX_ROW_BYTES, jsonl_lines, parse_line

SCAN_COLUMNS_ROWS = 2000  # rows whose keys make up the column list


class RowFile:
    """Read-only, random access to the rows of one dataset file. ``rows(start, stop)`` -> list of dicts."""

    def __init__(self, path: Path | str, text_split: str = "line"):
        self.path = Path(path)
        self.text_split = text_split  # a .txt file: one document per line, or per blank-line block
        suffix = self.path.suffix.lower()
        if not self.path.is_file():
            raise DataError(f"{self.path}: no such file")
        if suffix not in SUFFIXES:
            raise DataError(f"{self.path}: unsupported file type '{suffix}' (use {', '.join(SUFFIXES)})")
        if self.path.stat().st_size == 0:
            raise DataError(f"{self.path}: the file is empty")
        self.suffix = suffix
        self._rows: list[dict] | None = None
        self._offsets, self._lengths, self._lines = array("q"), array("q"), array("q")
        self.columns: list[str] = []
        if suffix == ".jsonl" or (suffix == ".json" and _looks_like_jsonl(self.path)):
            self._index_jsonl()
        else:
            self._rows = read_raw_rows(self.path, text_split=text_split)[0]
            _check_row_sizes(self.path, self._rows)
            self.columns = _columns(self._rows[:SCAN_COLUMNS_ROWS])
        if not len(self):
            raise DataError(f"{self.path}: the file has no rows")

    @property
    def lazy(self) -> bool:
        return self._rows is None

    def __len__(self) -> int:
        return len(self._offsets) if self._rows is None else len(self._rows)

    def line_of(self, index: int) -> int:
        """The 1-based line (JSONL) or row number of row ``index``, for error messages."""
        return self._lines[index] if self._rows is None else index + 1

    def rows(self, start: int = 0, stop: int | None = None) -> list[dict]:
        stop = len(self) if stop is None else min(stop, len(self))
        start = max(0, start)
        if self._rows is not None:
            return [dict(r) for r in self._rows[start:stop]]
        out = []
        with open(self.path, "rb") as fh:
            for i in range(start, stop):
                fh.seek(self._offsets[i])
                out.append(json.loads(fh.read(self._lengths[i])))
        return out

    def row(self, index: int) -> dict:
        if not 0 <= index < len(self):
            raise DataError(f"{self.path}: row {index} does not exist (the file has {len(self)} rows)")
        return self.rows(index, index + 1)[0]

    def iter_rows(self, chunk: int = 4096):
        for start in range(0, len(self), chunk):
            yield from self.rows(start, start + chunk)

    def _index_jsonl(self) -> None:
        """One pass: offsets of non-blank lines, each decoded and parsed once so a bad line is named at open."""
        keys: dict[str, None] = {}
        for lineno, pos, line in jsonl_lines(self.path, MAX_ROW_BYTES):
            if line.strip():
                row = parse_line(self.path, lineno, line)
                if len(self._offsets) < SCAN_COLUMNS_ROWS:
                    keys.update(dict.fromkeys(row))
                self._offsets.append(pos)
                self._lengths.append(len(line))
                self._lines.append(lineno)
        self.columns = list(keys)


def _looks_like_jsonl(path: Path) -> bool:
    """A .json file holding JSON Lines (an object per line) rather than one array."""
    with open(path, "rb") as fh:
        head = fh.read(1 << 16).lstrip(b"\xef\xbb\xbf \t\r\n")
    if not head.startswith(b"{"):
        return False
    first, _, rest = head.partition(b"\n")
    try:
        json.loads(first)
    except (ValueError, RecursionError):  # not JSON (or not UTF-8), or nested too deep: the full reader names it
        return False
    return bool(rest.strip()) and rest.lstrip().startswith(b"{")


def _check_row_sizes(path: Path, rows: list[dict]) -> None:
    if path.stat().st_size <= MAX_ROW_BYTES:
        return
    for i, row in enumerate(rows, start=1):
        size = len(json.dumps(row, ensure_ascii=False).encode("utf-8"))
        if size > MAX_ROW_BYTES:
            raise DataError(f"{path}: row {i}: the row is {size / 2**20:.1f} MB, over the {MAX_ROW_BYTES / 2**20:g} MB "
                            "limit for one row (is the file broken?)")


def _columns(rows: list[dict]) -> list[str]:
    keys: dict[str, None] = {}
    for r in rows:
        keys.update(dict.fromkeys(r))
    return list(keys)


# ----------------------------------------------------------------------------------------------------------------------------
# Atomic saves


def atomic_write(target: Path, write) -> Path:
    """``write(fh)`` into a temp file next to ``target``, fsync, then rename over it; the temp is removed on any failure."""
    target = Path(target)
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass  # the original error matters more; a workspace removes its stray temp files when it is next opened
        raise
    fsync_dir(target.parent)
    return target


def fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable (best effort: not every filesystem lets a folder be fsynced)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_rows(target: Path, items, base: RowFile | None = None) -> Path:
    """Atomically save rows to ``target`` in its own file type (see ``rows_writer``)."""
    return atomic_write(target, rows_writer(target, items, base))


def rows_writer(target: Path, items, base: RowFile | None = None):
    """``write(fh)`` that stores rows in ``target``'s file type; rows that file type cannot hold are refused here, before
    anything is written (errors name ``target``).

    ``items`` holds dicts (new or edited rows) and ints (row ``i`` of ``base`` unchanged: JSONL copies its bytes as they are).
    """
    suffix = Path(target).suffix.lower()
    if suffix == ".jsonl":
        return lambda fh: _write_jsonl(fh, items, base)
    rows = [base.row(x) if isinstance(x, int) else x for x in items]
    if suffix == ".json":
        data = json.dumps(rows, ensure_ascii=False, indent=2).encode("utf-8")
        return lambda fh: fh.write(data)
    if suffix == ".txt":
        data = _text_bytes(target, rows, base.text_split if base is not None else "line")
        return lambda fh: fh.write(data)
    if suffix in (".csv", ".parquet"):
        frame = _frame(target, rows)
        if suffix == ".csv":
            data = frame.to_csv(index=False).encode("utf-8")
            return lambda fh: fh.write(data)
        return lambda fh: _to_parquet(frame, fh, target)
    raise DataError(f"{target}: unsupported file type '{suffix}'")


def _write_jsonl(fh, items, base: RowFile | None) -> None:
    src = open(base.path, "rb") if base is not None and base.lazy else None
    try:
        for x in items:
            if isinstance(x, int) and src is not None:
                src.seek(base._offsets[x])
                line = src.read(base._lengths[x])
            else:
                line = json.dumps(base.row(x) if isinstance(x, int) else x, ensure_ascii=False).encode("utf-8")
            fh.write(line if line.endswith(b"\n") else line + b"\n")
    finally:
        if src is not None:
            src.close()


def _text_bytes(target: Path, rows: list[dict], text_split: str) -> bytes:
    """Documents back into a plain-text file, one per line or per blank-line block; a document that would read back as
    a different one (a line break in line mode, a blank line in block mode) is refused, naming its row."""
    docs = []
    for i, r in enumerate(rows, start=1):
        text = r.get("text")
        if not isinstance(text, str) or set(r) != {"text"}:
            raise DataError(f"{target}: row {i}: a plain-text file holds one 'text' per document; use a JSONL dataset "
                            "for other columns")
        doc = "\n".join(line.rstrip() for line in text.strip().splitlines())
        if not doc or (text_split == "line" and "\n" in doc) or (text_split != "line" and "\n\n" in doc):
            raise DataError(f"{target}: row {i}: {'an empty document' if not doc else 'this document has a line break'}, "
                            f"which a .txt file read {'line by line' if text_split == 'line' else 'in blank-line blocks'} "
                            "would not read back as one document; use a JSONL dataset")
        docs.append(doc)
    return ("\n\n" if text_split != "line" else "\n").join(docs).encode("utf-8") + b"\n"


def _to_parquet(frame, fh, target: Path) -> None:
    try:
        frame.to_parquet(fh, index=False)
    except (ValueError, TypeError) as exc:  # pyarrow: a column whose rows hold different types
        raise DataError(f"{target}: cannot save as Parquet: {str(exc).splitlines()[0][:300]} "
                        "(keep each column one type, e.g. all text)") from None


def _frame(target: Path, rows: list[dict]):
    import pandas as pd

    columns = _columns(rows)
    if Path(target).suffix.lower() == ".csv":
        for i, r in enumerate(rows, start=1):
            for k, v in r.items():
                if isinstance(v, (list, dict)):
                    raise DataError(f"{target}: row {i}: column '{k}' holds a list or object, which CSV cannot store; "
                                    "use a JSON or JSONL dataset for conversations")
        cells = [{c: ("" if r.get(c) is None else r.get(c)) for c in columns} for r in rows]
        return pd.DataFrame(cells, columns=columns, dtype=str)
    return pd.DataFrame(rows, columns=columns)
