"""The datasets a newcomer can pick without typing a path: every data file under the studio's data folders (the shipped
``assets/data`` demo sets, ``./data``, uploads, editable copies) and every entry of a ``dataset_info.json`` there, each
with its row count.

    list_datasets([repo / "assets" / "data", Path("data")])
    # -> [{"spec": ".../assets/data#demo_sft", "name": "demo_sft", "rows": 64, "kind": "sft"}, ...]

Counting reads each file once and is cached by (path, size, modification time), so the Data tab's and the Train form's
pickers stay quick. A file or entry that cannot be read is listed without a count. Pure Python (+ pandas for tables).
"""

from __future__ import annotations

import json
from pathlib import Path

from studio.engine.data.dataset_info import entry_kind, read_dataset_info
from studio.engine.data.formats import SUFFIXES, DataError, text_documents
from studio.engine.data.textfile import jsonl_lines

INFO = "dataset_info.json"
MAX_FILES = 500  # per root: a picker, not a file browser
_counts: dict[tuple, int | None] = {}


def list_datasets(roots: list[Path]) -> list[dict]:
    """Entries of dataset_info.json folders first (in file order), then the other data files, per root."""
    out, seen = [], set()
    for root in roots:
        root = Path(root)
        if not root.is_dir():
            continue
        infos = sorted(root.rglob(INFO))[:MAX_FILES]
        covered = set()
        for info in infos:
            out += _entries(info, covered)
        files = sorted(p for p in root.rglob("*") if p.suffix.lower() in SUFFIXES and p.name != INFO and p.is_file()
                       and not any(part.startswith(".") or part == "versions" for part in p.relative_to(root).parts))
        for path in files[:MAX_FILES]:
            if path.resolve() in covered or str(path) in seen:
                continue
            seen.add(str(path))
            out.append({"spec": str(path), "name": path.name, "rows": count_rows(path), "kind": ""})
    return out


def _entries(info: Path, covered: set) -> list[dict]:
    """One item per entry with a local file; the entries' files are then not listed again on their own."""
    try:
        entries = read_dataset_info(info)
    except (DataError, OSError):
        return []
    out = []
    for name, entry in entries.items():
        rel = entry.get("file_name") or ""
        path = info.parent / rel
        if not rel or not path.is_file():
            continue
        covered.add(path.resolve())
        fs_split = "blank_line" if entry.get("text_split") == "blank_line" else "line"
        out.append({"spec": f"{info.parent}#{name}", "name": name, "rows": count_rows(path, fs_split),
                    "kind": entry_kind(entry)})
    return out


def count_rows(path: Path, text_split: str = "line") -> int | None:
    """Rows of one data file (None when it cannot be read); cached by size and modification time."""
    try:
        st = path.stat()
    except OSError:
        return None
    key = (str(path), st.st_size, st.st_mtime_ns, text_split)
    if key not in _counts:
        _counts[key] = _count(path, text_split)
    return _counts[key]


def _count(path: Path, text_split: str) -> int | None:
    suffix = path.suffix.lower()
    try:
        if suffix == ".jsonl":
            return sum(1 for _, _, line in jsonl_lines(path) if line.strip())
        if suffix == ".txt":
            return len(text_documents(path, text_split))
        if suffix == ".json":
            with open(path, "rb") as fh:
                head = fh.read(1 << 16).lstrip(b"\xef\xbb\xbf \t\r\n")
            if head.startswith(b"{") and b"\n{" in head:  # JSON Lines with a .json name
                return sum(1 for _, _, line in jsonl_lines(path) if line.strip())
            data = json.loads(path.read_text(encoding="utf-8-sig"))
            return len(data) if isinstance(data, list) else None
        from studio.engine.data.formats import read_raw_rows

        return read_raw_rows(path)[1]
    except (DataError, OSError, ValueError, RecursionError):
        return None
