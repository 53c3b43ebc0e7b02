"""Reading dataset files within bounds, so a bad file is named instead of crashing or flooding memory.

- text: UTF-8 only (a UTF-8 byte-order mark is fine); UTF-16/32 (told by their byte-order mark, or by the NUL bytes of
  UTF-16 without one) and binary files are named, with what to do;
- JSON Lines: read line by line with a size cap *while reading* (a 2 GB line is refused after ``limit`` bytes, never
  read whole), each line parsed on its own;
- JSON values: ``NaN`` / ``Infinity`` (not JSON, but Python's ``json`` takes them) are refused, and so is nesting deeper
  than ``MAX_NESTING`` (the recursive code that walks rows later would hit Python's recursion limit);
- table cells (CSV, Parquet): plain text, numbers, lists and objects only: a binary column is named, not hashed later;
  a CSV row with more or fewer fields than its header is named by line.

Every error is a ``DataError`` whose message names the file and the line or row. Pure Python: no torch.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

MAX_ROW_BYTES = 8 * 1024 * 1024  # one row bigger than this is a broken file, not a training example
MAX_NESTING = 100  # lists/objects inside each other; real rows (conversations, tool calls) stay under 10
UTF8_BOM = b"\xef\xbb\xbf"
_BOMS = ((b"\x00\x00\xfe\xff", "UTF-32"), (b"\xff\xfe\x00\x00", "UTF-32"), (b"\xfe\xff", "UTF-16"), (b"\xff\xfe", "UTF-16"))


class DataError(ValueError):
    """Bad dataset input; the message names the file, the row (when there is one) and the reason."""


def encoding_problem(head: bytes) -> str | None:
    """Why a file starting with ``head`` is not UTF-8 text the studio reads, or None."""
    for bom, name in _BOMS:  # UTF-32 first: its little-endian mark starts with UTF-16's
        if head.startswith(bom):
            return f"the file is {name} text (it starts with a {name} byte-order mark); save it as UTF-8"
    head = head[:4096]
    if b"\x00" not in head:
        return None
    even, odd = head[0::2], head[1::2]
    if len(head) >= 8 and (odd.count(0) > 0.9 * len(odd) or even.count(0) > 0.9 * len(even)):
        return "the file looks like UTF-16 text (every other byte is NUL); save it as UTF-8"
    return "this is a binary file, not text (renamed?)"


def read_text(path: Path) -> str:
    """The whole file as text; DataError for UTF-16/32, binary or non-UTF-8 bytes (with the line)."""
    raw = Path(path).read_bytes()
    problem = encoding_problem(raw[:4096])
    if problem:
        raise DataError(f"{path}: {problem}")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise DataError(f"{path}: line {line}: not UTF-8 text ({exc.reason} at byte {exc.start}); save the file as UTF-8") from None


def jsonl_lines(path: Path, limit: int = MAX_ROW_BYTES):
    """``(line number, byte offset, line bytes)`` of every line (a leading UTF-8 BOM skipped).

    A line longer than ``limit`` bytes is refused once ``limit`` bytes of it have been read: memory never holds more.
    """
    with open(path, "rb") as fh:
        head = fh.read(4096)
        problem = encoding_problem(head)
        if problem:
            raise DataError(f"{path}: {problem}")
        fh.seek(len(UTF8_BOM) if head.startswith(UTF8_BOM) else 0)
        pos, lineno = fh.tell(), 0
        while True:
            line = fh.readline(limit + 1)
            if not line:
                return
            lineno += 1
            if len(line) > limit:
                raise DataError(f"{path}: line {lineno}: the row is over the {limit / 2**20:g} MB limit for one row "
                                "(is the file broken?); stopped reading there")
            yield lineno, pos, line
            pos += len(line)


def parse_line(path: Path, lineno: int, line: bytes) -> dict:
    """One JSON Lines line -> its row (an object); DataError naming the file and line."""
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: line {lineno}: not UTF-8 text ({exc.reason} at byte {exc.start} of the line); "
                        "save the file as UTF-8") from None
    where = f"{path}: line {lineno}"
    row = loads(text, where, whole_file=False)
    if not isinstance(row, dict):
        hint = " (a JSON array: save the file as .json)" if lineno == 1 and isinstance(row, list) else ""
        raise DataError(f"{where}: expected a JSON object, got {type(row).__name__}{hint}")
    if _deeper_than([row], MAX_NESTING, text):
        raise DataError(f"{where}: {_DEEP}")
    return row


_DEEP = f"lists/objects nested more than {MAX_NESTING} levels deep (is the file broken?)"


class _NotFinite(ValueError):
    pass


def _refuse_constant(name: str):
    raise _NotFinite(name)


_DECODER = json.JSONDecoder(parse_constant=_refuse_constant)  # one decoder: json.loads(..., parse_constant) builds one a call


def loads(text: str, where: str, whole_file: bool = True):
    """``json.loads`` that refuses NaN/Infinity and nesting too deep to parse, naming ``where`` (and, for a whole file,
    the line)."""
    try:
        return _DECODER.decode(text)
    except json.JSONDecodeError as exc:
        line = f"line {exc.lineno}: " if whole_file else ""
        raise DataError(f"{where}: {line}invalid JSON ({exc.msg} at column {exc.colno})") from None
    except _NotFinite as exc:
        m = re.search(rf"(?<![\w\"]){re.escape(str(exc))}(?![\w\"])", text) if whole_file else None
        line = f"line {text.count(chr(10), 0, m.start()) + 1}: " if m else ""
        raise DataError(f"{where}: {line}{exc} is not a JSON value (write null for a missing value)") from None
    except RecursionError:
        raise DataError(f"{where}: {_DEEP}") from None


def check_rows_nesting(path: Path, rows: list, text: str) -> None:
    """Name the first row of a JSON array nested deeper than ``MAX_NESTING``."""
    if text.count("[") + text.count("{") <= MAX_NESTING or not _deeper_than(rows, MAX_NESTING):
        return  # one walk over every row at once: the common case costs a third of the parse
    for i, row in enumerate(rows, start=1):
        if _deeper_than([row], MAX_NESTING):
            raise DataError(f"{path}: row {i}: {_DEEP}")


def _deeper_than(values: list, limit: int, text: str | None = None) -> bool:
    """Whether any of ``values`` (each at level 1) nests lists/objects more than ``limit`` levels; level by level, so
    a deep value cannot overflow the stack."""
    if text is not None and text.count("[") + text.count("{") <= limit:
        return False  # cannot nest deeper than its brackets: skip the walk for ordinary rows
    level, depth = values, 1
    while level:
        if depth > limit:
            return True
        deeper = []
        for item in level:
            for v in item.values() if type(item) is dict else item:
                if type(v) is dict or type(v) is list:
                    deeper.append(v)
        level, depth = deeper, depth + 1
    return False


# ----------------------------------------------------------------------------------------------------------------------------
# Tables


def check_csv_shape(path: Path, text: str) -> None:
    """A header with a duplicate name, or a row with more or fewer fields than the header, is named with its line."""
    import csv
    import io

    csv.field_size_limit(max(csv.field_size_limit(), MAX_ROW_BYTES))  # pandas reads long cells; so must this check
    reader = csv.reader(io.StringIO(text))
    try:
        header = next(reader, None)
        if not header:
            raise DataError(f"{path}: the file is empty (no header row)")
        seen = set()
        for name in header:
            if name in seen:
                raise DataError(f"{path}: line 1: column '{name}' appears twice in the header")
            seen.add(name)
        for record in reader:
            if record and len(record) != len(header):
                raise DataError(f"{path}: line {reader.line_num}: {len(record)} fields, but the header has {len(header)} "
                                "(a missing or extra comma, or an unclosed quote?)")
    except csv.Error as exc:
        raise DataError(f"{path}: line {reader.line_num}: cannot read as CSV: {exc}") from None


def table_rows(path: Path, frame) -> list[dict]:
    """A pandas frame's rows as plain dicts; a cell the studio cannot hold (bytes, inf, ...) is named by row and column."""
    rows = []
    for i, record in enumerate(frame.to_dict(orient="records"), start=1):
        row = {}
        for col, value in record.items():
            try:
                row[str(col)] = plain(value)
            except DataError as exc:
                raise DataError(f"{path}: row {i}: column '{col}': {exc}") from None
        rows.append(row)
    return rows


def plain(value):
    """numpy/pandas/pyarrow values -> JSON-like Python values; missing cells -> None; DataError for what is neither."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (bytes, bytearray, memoryview)):
        raise DataError("holds binary data (bytes), not text; store text, numbers or lists in it")
    if type(value).__name__ in ("NaTType", "NAType"):  # pandas' missing timestamp / missing value
        return None
    if hasattr(value, "isoformat"):  # dates and timestamps: their text
        return value.isoformat()
    if hasattr(value, "tolist"):  # numpy arrays and scalars
        return plain(value.tolist())
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        if value != value:  # NaN: a missing cell in a table
            return None
        raise DataError(f"holds {value} (an infinite number)")
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    raise DataError(f"holds {type(value).__name__} values, which the studio cannot read; store text, numbers or lists")
