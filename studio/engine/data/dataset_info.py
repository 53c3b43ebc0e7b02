"""LLaMA-Factory ``dataset_info.json`` folders: reading their entries, the format each entry declares, and the entry the
Data tab writes for a column mapping (``{source column: role}``), so training reads a mapped folder exactly as the studio
shows it.
"""

from __future__ import annotations

import json
from pathlib import Path

from studio.engine.data.formats import (ALPACA_COLUMNS, KIND_USE, OPENAI_TAGS, SHAREGPT_COLUMNS, SHAREGPT_TAGS,
                                        SUFFIXES, USABLE_KINDS, DataError, FormatSpec)

# roles a source column can be mapped to; the names are LLaMA-Factory's dataset_info.json "columns" keys
MAPPING_ROLES = ("system", "prompt", "query", "response", "history", "messages", "chosen", "rejected", "kto_tag", "text")


def entry_kind(entry: dict) -> str:
    """What a dataset_info.json entry holds: 'preference' (``ranking: true``), 'kto' (a ``kto_tag`` column) or 'sft'."""
    if entry.get("ranking"):
        return "preference"
    if entry.get("kind") == "text":  # the data studio's plain-text (continued pre-training) entries
        return "text"
    return "kto" if "kto_tag" in (entry.get("columns") or {}) else "sft"




def read_dataset_info(info_path: Path) -> dict:
    """A dataset_info.json as {entry name: entry}; DataError when it is not an object of entries."""
    try:
        info = json.loads(Path(info_path).read_text(encoding="utf-8-sig"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{info_path}: not valid JSON ({exc})") from None
    if not isinstance(info, dict) or not info:
        raise DataError(f"{info_path}: expected an object of dataset entries")
    return info


def dataset_info_entries(info_path: Path) -> list[str]:
    """The entry names of a dataset_info.json that point at local files."""
    names = [n for n, e in read_dataset_info(info_path).items() if isinstance(e, dict) and e.get("file_name")]
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
    names = [name] if name else [n for n, e in info.items() if isinstance(e, dict) and entry_kind(e) in (usable or ())]
    if not names:
        raise DataError(f"{info_path}: no {kind} entries (entries: {', '.join(sorted(info))})")
    out = []
    for n in names:
        entry = info[n]
        if not isinstance(entry, dict) or not entry.get("file_name"):
            raise DataError(f"{info_path}: entry '{n}' has no file_name (hub datasets cannot be fetched here)")
        if usable is not None and entry_kind(entry) not in usable:
            raise DataError(f"{info_path}: entry '{n}' is {entry_kind(entry)} data: "
                            f"{KIND_USE[entry_kind(entry)]}, not for {kind}")
        try:
            fs = spec_from_entry(entry)
        except DataError as exc:
            raise DataError(f"{info_path}: entry '{n}': {exc}") from None
        target = info_path.parent / entry["file_name"]
        if not target.exists():
            raise DataError(f"{info_path}: entry '{n}': file {target} not found")
        files = sorted(p for p in target.iterdir() if p.suffix.lower() in SUFFIXES) if target.is_dir() else [target]
        out += [(f, fs) for f in files]
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
    if entry.get("kind") == "text":
        return FormatSpec("text", {"text": (entry.get("columns") or {}).get("prompt", "text")})
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
