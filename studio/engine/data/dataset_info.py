"""LLaMA-Factory ``dataset_info.json`` folders: reading their entries, the format each entry declares, and the entry the
Data tab writes for a column mapping (``{source column: role}``), so training reads a mapped folder exactly as the studio
shows it.
"""

from __future__ import annotations

from pathlib import Path

from studio.engine.data.formats import (ALPACA_COLUMNS, KIND_USE, OPENAI_TAGS, SHAREGPT_COLUMNS, SHAREGPT_TAGS,
                                        SUFFIXES, TEXT_SPLITS, USABLE_KINDS, DataError, FormatSpec)
from studio.engine.data.textfile import loads, read_text

# roles a source column can be mapped to; the names are LLaMA-Factory's dataset_info.json "columns" keys
MAPPING_ROLES = ("system", "prompt", "query", "response", "history", "messages", "chosen", "rejected", "kto_tag", "text")


def entry_kind(entry: dict) -> str:
    """What a dataset_info.json entry holds: 'preference' (``ranking: true``), 'kto' (a ``kto_tag`` column) or 'sft'."""
    if entry.get("ranking"):
        return "preference"
    if entry.get("kind") == "text" or is_pretraining_entry(entry):
        return "text"
    return "kto" if "kto_tag" in (entry.get("columns") or {}) else "sft"


def is_pretraining_entry(entry: dict) -> bool:
    """LLaMA-Factory's pre-training entries: a ``.txt`` file, or alpaca-style columns naming only the ``prompt`` (e.g.
    wiki_demo ``{"file_name": "wiki_demo.txt", "columns": {"prompt": "text"}}``, c4_demo the same on JSON Lines): its
    pre-training stage reads that one column. An entry that also names a response is SFT data."""
    if str(entry.get("file_name") or "").lower().endswith(".txt"):
        return True
    columns = entry.get("columns") or {}
    return entry.get("formatting", "alpaca") == "alpaca" and set(columns) == {"prompt"}


MAX_INFO_BYTES = 16 * 1024 * 1024  # LLaMA-Factory's own, with ~100 entries, is ~30 KB
FORMATTINGS = ("alpaca", "sharegpt")
# the keys whose type is checked (others, such as hf_hub_url or split, are LLaMA-Factory's and ignored here)
ENTRY_TYPES = {"file_name": (str, "text"), "formatting": (str, "text"), "columns": (dict, "an object"),
               "tags": (dict, "an object"), "ranking": (bool, "true or false"), "kind": (str, "text"),
               "text_split": (str, "text")}


def read_dataset_info(info_path: Path) -> dict:
    """A dataset_info.json as {entry name: entry}, every entry type-checked; DataError naming the file and entry."""
    info_path = Path(info_path)
    if info_path.stat().st_size > MAX_INFO_BYTES:
        raise DataError(f"{info_path}: {info_path.stat().st_size / 2**20:.1f} MB, over the "
                        f"{MAX_INFO_BYTES / 2**20:g} MB limit for a dataset_info.json")
    info = loads(read_text(info_path), str(info_path))
    if not isinstance(info, dict) or not info:
        got = "an empty object" if info == {} else _json_type(info)
        raise DataError(f"{info_path}: expected an object of dataset entries ({{\"name\": {{\"file_name\": ...}}}}), got {got}")
    for name, entry in info.items():
        check_entry(entry, f"{info_path}: entry '{name}'")
    return info


def check_entry(entry, where: str) -> None:
    """The types of one entry: file_name text, formatting alpaca|sharegpt, columns/tags objects of text, ranking a bool."""
    if not isinstance(entry, dict):
        raise DataError(f"{where}: expected an object with file_name, formatting, columns, ...; got {_json_type(entry)}")
    for key, (want, what) in ENTRY_TYPES.items():
        if key in entry and not isinstance(entry[key], want):
            raise DataError(f"{where}: '{key}' must be {what}, got {_json_type(entry[key])}")
    if "formatting" in entry and entry["formatting"] not in FORMATTINGS:
        raise DataError(f"{where}: formatting '{entry['formatting']}' is not supported ({', '.join(FORMATTINGS)})")
    if "kind" in entry and entry["kind"] != "text":
        raise DataError(f"{where}: kind '{entry['kind']}' is not supported (only 'text', for plain-text rows)")
    if "text_split" in entry and entry["text_split"] not in TEXT_SPLITS:
        raise DataError(f"{where}: text_split '{entry['text_split']}' is not supported ({', '.join(TEXT_SPLITS)})")
    for key in ("columns", "tags"):
        for k, v in (entry.get(key) or {}).items():
            if not isinstance(v, str):
                raise DataError(f"{where}: '{key}.{k}' must be text (a column or tag name), got {_json_type(v)}")


def _json_type(value) -> str:
    if isinstance(value, bool):
        return "true/false"
    names = {dict: "an object", list: "a list", str: "text", int: "a number", float: "a number", type(None): "null"}
    return names.get(type(value), type(value).__name__)


def entry_files(info_path: Path, name: str, entry: dict) -> list[Path]:
    """The data files of an entry: its file_name, which must stay inside the dataset_info.json's folder (no absolute path,
    no '..', no symlink out), or that folder's data files; DataError when there is none."""
    where = f"{info_path}: entry '{name}'"
    rel = entry.get("file_name") or ""
    if not rel.strip():
        raise DataError(f"{where}: has no file_name (hub datasets cannot be fetched here)")
    folder = Path(info_path).parent.resolve()
    if "\x00" in rel or Path(rel).is_absolute() or ".." in Path(rel).parts:
        raise DataError(f"{where}: file_name {rel!r} must be a path inside {folder} (no absolute path, no '..')")
    target = Path(info_path).parent / rel
    if not target.resolve().is_relative_to(folder):
        raise DataError(f"{where}: file_name {rel!r} leads outside {folder} (a symlink?)")
    if not target.exists():
        raise DataError(f"{where}: file {target} not found")
    if not target.is_dir():
        return [target]
    files = sorted(p for p in target.iterdir() if p.suffix.lower() in SUFFIXES and p.is_file())
    outside = [p for p in files if not p.resolve().is_relative_to(folder)]
    if outside:
        raise DataError(f"{where}: {outside[0]} leads outside {folder} (a symlink?)")
    if not files:
        raise DataError(f"{where}: folder {target} has no {', '.join(SUFFIXES)} files")
    return files


def dataset_info_entries(info_path: Path) -> list[str]:
    """The entry names of a dataset_info.json that point at local files."""
    names = [n for n, e in read_dataset_info(info_path).items() if e.get("file_name")]
    if not names:
        raise DataError(f"{info_path}: no entry with a local file_name")
    return names


def spec_from_dataset_info(info_path: Path, name: str = "", kind: str | None = "sft") -> list[tuple[Path, FormatSpec | None]]:
    """Files + declared formats of a LLaMA-Factory dataset_info.json: one entry by name, or every entry of ``kind``
    ('sft', 'preference', 'kto' or 'text'). ``kind=None`` takes the named entry whatever it holds (the Data tab)."""
    info = read_dataset_info(info_path)
    if name and name not in info:
        raise DataError(f"{info_path}: no entry '{name}' (entries: {', '.join(sorted(info))})")
    usable = USABLE_KINDS[kind] if kind else None
    names = [name] if name else [n for n, e in info.items() if entry_kind(e) in (usable or ())]
    if not names:
        raise DataError(f"{info_path}: no {kind} entries (entries: {', '.join(sorted(info))})")
    out = []
    for n in names:
        entry = info[n]
        if not entry.get("file_name"):
            raise DataError(f"{info_path}: entry '{n}' has no file_name (hub datasets cannot be fetched here)")
        if usable is not None and entry_kind(entry) not in usable:
            raise DataError(f"{info_path}: entry '{n}' is {entry_kind(entry)} data: "
                            f"{KIND_USE[entry_kind(entry)]}, not for {kind}")
        try:
            fs = spec_from_entry(entry)
        except DataError as exc:
            raise DataError(f"{info_path}: entry '{n}': {exc}") from None
        out += [(f, fs) for f in entry_files(info_path, n, entry)]
    return out


def entry_from_mapping(mapping: dict, file_name: str, sample: dict | None = None) -> dict:
    """``{source column: role}`` -> a dataset_info.json entry (LLaMA-Factory style ``columns``, ``ranking``, ``tags``).

    E.g. Intel/orca_dpo_pairs ``{"system": "system", "question": "prompt", "chatgpt": "chosen",
    "llama2-13b-chat": "rejected"}`` -> ``{"file_name": ..., "ranking": true, "columns": {"prompt": "question", ...}}``.
    Plain text gets ``"kind": "text"`` (LLaMA-Factory ignores the key; its pre-training stage reads ``columns.prompt``).
    """
    roles: dict[str, str] = {}
    for col, role in mapping.items():
        if not role or role == "ignore":
            continue
        if role not in MAPPING_ROLES:
            raise DataError(f"column '{col}': unknown role '{role}' (roles: {', '.join(MAPPING_ROLES)})")
        if role in roles:
            raise DataError(f"role '{role}' is given to two columns: '{roles[role]}' and '{col}'")
        if sample is not None and col not in sample:
            raise DataError(f"column '{col}' is not in the data (columns: {', '.join(sample)})")
        roles[role] = col
    if "text" in roles:
        if set(roles) - {"text"}:
            raise DataError("a 'text' column (plain text) cannot be combined with other roles")
        return {"file_name": file_name, "kind": "text", "columns": {"prompt": roles["text"]}}
    entry: dict = {"file_name": file_name}
    pair = {"chosen", "rejected"} & set(roles)
    if pair and pair != {"chosen", "rejected"}:
        raise DataError("preference data needs both a 'chosen' and a 'rejected' column")
    if "messages" in roles:
        entry["formatting"] = "sharegpt"
        turns = (sample or {}).get(roles["messages"])
        first = next((m for m in turns if isinstance(m, dict)), {}) if isinstance(turns, list) else {}
        entry["tags"] = dict(OPENAI_TAGS if "role" in first else SHAREGPT_TAGS)
    else:
        entry["formatting"] = "alpaca"
        needed = ("prompt",) if pair else ("prompt", "response")
        missing = [r for r in needed if r not in roles]
        if missing:
            raise DataError(f"map a column to {' and '.join(repr(m) for m in missing)} "
                            "(or map a conversation column to 'messages', or a single text column to 'text')")
    if pair:
        entry["ranking"] = True
    entry["columns"] = dict(roles)
    return entry


def spec_from_entry(entry: dict) -> FormatSpec:
    """The FormatSpec of one dataset_info.json entry (what ``spec_from_dataset_info`` gives for it)."""
    if entry_kind(entry) == "text":
        column = "text" if str(entry.get("file_name") or "").lower().endswith(".txt") else \
            (entry.get("columns") or {}).get("prompt", "text")
        return FormatSpec("text", {"text": column}, {"text_split": entry.get("text_split", "line")})
    fmt = entry.get("formatting", "alpaca")
    if fmt not in ("alpaca", "sharegpt"):
        raise DataError(f"formatting '{fmt}' is not supported (alpaca, sharegpt)")
    columns = dict(ALPACA_COLUMNS if fmt == "alpaca" else SHAREGPT_COLUMNS, **(entry.get("columns") or {}))
    tags = dict(SHAREGPT_TAGS, **(entry.get("tags") or {})) if fmt == "sharegpt" else {}
    kind = entry_kind(entry)
    if kind != "sft":
        fmt = ("pref_" if kind == "preference" else "kto_") + fmt
        columns = dict({"chosen": "chosen", "rejected": "rejected"}, **columns)
    return FormatSpec(fmt, columns, tags)


def spec_from_mapping(mapping: dict, sample: dict | None = None) -> FormatSpec:
    return spec_from_entry(entry_from_mapping(mapping, "", sample))
