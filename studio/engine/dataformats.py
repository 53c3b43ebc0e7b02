"""Reading dataset files and turning rows of each known format into chat messages.

Formats and their columns follow LLaMA-Factory's ``dataset_info.json`` conventions, so its dataset folders load unchanged:
alpaca (prompt=instruction, query=input, response=output, system, history) and sharegpt (messages=conversations with
role/content tags ``from``/``value``, ``human``/``gpt``); OpenAI ``messages`` is sharegpt with role/content/user/assistant.
Pure Python + pandas (for CSV/Parquet): no torch.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path


class DataError(ValueError):
    """Bad dataset input; the message names the file, the row (when there is one) and the reason."""


ALPACA_COLUMNS = {"prompt": "instruction", "query": "input", "response": "output", "system": "system", "history": "history"}
SHAREGPT_COLUMNS = {"messages": "conversations", "system": "system", "tools": "tools"}
SHAREGPT_TAGS = {"role_tag": "from", "content_tag": "value", "user_tag": "human", "assistant_tag": "gpt",
                 "observation_tag": "observation", "function_tag": "function_call", "system_tag": "system"}
OPENAI_TAGS = {"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant",
               "observation_tag": "tool", "function_tag": "function_call", "system_tag": "system"}


@dataclass
class FormatSpec:
    format: str  # alpaca | sharegpt | messages | prompt_completion
    columns: dict = field(default_factory=dict)
    tags: dict = field(default_factory=dict)


# ----------------------------------------------------------------------------------------------------------------------------
# Files


def read_raw_rows(path: Path, offset: int = 0, limit: int | None = None) -> tuple[list[dict], int]:
    """Rows ``offset .. offset+limit`` of a file as dicts, and the file's total row count."""
    path = Path(path)
    suffix = path.suffix.lower()
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: the file is empty")
    if suffix == ".jsonl":
        rows = _read_jsonl(path)
    elif suffix == ".json":
        rows = _read_json(path)
    elif suffix in (".csv", ".parquet"):
        rows = _read_table(path)
    else:
        raise DataError(f"{path}: unsupported file type '{suffix}' (use .json, .jsonl, .csv or .parquet)")
    end = None if limit is None else offset + limit
    return rows[offset:end], len(rows)


def _read_text(path: Path) -> str:
    raw = path.read_bytes()
    if b"\x00" in raw[:4096]:
        raise DataError(f"{path}: this is a binary file, not text (renamed?)")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise DataError(f"{path}: line {line}: not UTF-8 text ({exc.reason} at byte {exc.start}); save the file as UTF-8") from None


def _read_jsonl(path: Path) -> list[dict]:
    rows = []
    for lineno, line in enumerate(_read_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}: line {lineno}: invalid JSON ({exc.msg} at column {exc.colno})") from None
        if not isinstance(row, dict):
            raise DataError(f"{path}: line {lineno}: expected a JSON object, got {type(row).__name__}")
        rows.append(row)
    return rows


def _read_json(path: Path) -> list[dict]:
    text = _read_text(path)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        if exc.msg == "Extra data":  # JSON Lines saved with a .json name
            return _read_jsonl(path)
        raise DataError(f"{path}: line {exc.lineno}: invalid JSON ({exc.msg} at column {exc.colno})") from None
    if isinstance(data, dict):
        lists = [v for v in data.values() if isinstance(v, list)]
        if len(lists) == 1:  # {"data": [...]} wrappers
            data = lists[0]
        else:
            raise DataError(f"{path}: expected a JSON list of rows at the top level, got an object")
    if not isinstance(data, list):
        raise DataError(f"{path}: expected a JSON list of rows at the top level, got {type(data).__name__}")
    for i, row in enumerate(data, start=1):
        if not isinstance(row, dict):
            raise DataError(f"{path}: row {i}: expected a JSON object, got {type(row).__name__}")
    return data


def _read_table(path: Path) -> list[dict]:
    import pandas as pd

    try:
        if path.suffix.lower() == ".csv":
            _read_text(path)  # same encoding/binary checks as JSON
            df = pd.read_csv(path, dtype=str, keep_default_na=False)
        else:
            df = pd.read_parquet(path)
    except DataError:
        raise
    except Exception as exc:  # pandas/pyarrow raise many types for one user problem: an unreadable table
        raise DataError(f"{path}: cannot read as {path.suffix[1:].upper()}: {str(exc).splitlines()[0][:300]}") from None
    return [_to_python(r) for r in df.to_dict(orient="records")]


def _to_python(value):
    """numpy arrays / scalars from Parquet into plain lists and scalars."""
    if isinstance(value, dict):
        return {k: _to_python(v) for k, v in value.items()}
    if hasattr(value, "tolist"):
        return _to_python(value.tolist())
    if isinstance(value, (list, tuple)):
        return [_to_python(v) for v in value]
    if isinstance(value, float) and value != value:  # NaN: a missing cell in a table
        return None
    return value


# ----------------------------------------------------------------------------------------------------------------------------
# Formats


def detect_format(row: dict, path: Path | str = "") -> FormatSpec:
    keys = set(row)
    if isinstance(row.get("messages"), list):
        first = next((m for m in row["messages"] if isinstance(m, dict)), {})
        tags = OPENAI_TAGS if "role" in first else SHAREGPT_TAGS
        return FormatSpec("messages", dict(SHAREGPT_COLUMNS, messages="messages"), dict(tags))
    if isinstance(row.get("conversations"), list):
        first = next((m for m in row["conversations"] if isinstance(m, dict)), {})
        tags = OPENAI_TAGS if "role" in first else SHAREGPT_TAGS
        return FormatSpec("sharegpt", dict(SHAREGPT_COLUMNS), dict(tags))
    if {"chosen", "rejected"} <= keys:
        raise DataError(f"{path}: preference data (chosen/rejected) is for reward modelling or DPO, not SFT")
    if "instruction" in keys and "output" in keys:
        return FormatSpec("alpaca", dict(ALPACA_COLUMNS))
    if isinstance(row.get("prompt"), list) and isinstance(row.get("completion"), list):
        return FormatSpec("prompt_completion", {"prompt": "prompt", "completion": "completion"}, dict(OPENAI_TAGS))
    if "prompt" in keys and ("completion" in keys or "response" in keys):
        resp = "completion" if "completion" in keys else "response"
        return FormatSpec("alpaca", dict(ALPACA_COLUMNS, prompt="prompt", query="", response=resp))
    if keys == {"text"}:
        raise DataError(f"{path}: plain-text rows (continued pre-training) are not supported by SFT; "
                        "use instruction/output, conversations or messages rows")
    raise DataError(f"{path}: cannot tell the format from the columns {sorted(keys)}; expected alpaca "
                    "(instruction, input, output), sharegpt (conversations) or messages")


def normalize_row(row: dict, fs: FormatSpec) -> list[dict]:
    """One raw row -> ``[{"role", "content"}, ...]``; raises DataError(reason) for rows that cannot be trained on."""
    if fs.format == "alpaca":
        return _alpaca(row, fs.columns)
    if fs.format == "prompt_completion":  # TRL's conversational prompt/completion rows
        prompt, completion = row.get("prompt"), row.get("completion")
        if not isinstance(prompt, list) or not isinstance(completion, list):
            raise DataError("'prompt' and 'completion' must both be lists of messages")
        return _sharegpt({"messages": prompt + completion}, {"messages": "messages"}, fs.tags)
    return _sharegpt(row, fs.columns, fs.tags)


def _text(row: dict, col: str, required: bool, what: str) -> str:
    value = row.get(col) if col else None
    if value is None or value == "":
        if required:
            raise DataError(f"missing or empty '{col}' ({what})")
        return ""
    if not isinstance(value, str):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        raise DataError(f"'{col}' must be text, got {type(value).__name__}")
    return value


def _alpaca(row: dict, cols: dict) -> list[dict]:
    prompt = _text(row, cols.get("prompt", "instruction"), True, "the instruction")
    query = _text(row, cols.get("query", ""), False, "the input")
    response = _text(row, cols.get("response", "output"), True, "the answer")
    messages = []
    system = _text(row, cols.get("system", ""), False, "the system prompt")
    if system:
        messages.append({"role": "system", "content": system})
    history = row.get(cols.get("history", "")) if cols.get("history") else None
    for turn in history or []:
        if not (isinstance(turn, (list, tuple)) and len(turn) == 2 and all(isinstance(t, str) for t in turn)):
            raise DataError("'history' must be a list of [question, answer] pairs")
        messages += [{"role": "user", "content": turn[0]}, {"role": "assistant", "content": turn[1]}]
    user = f"{prompt}\n{query}" if query else prompt
    return messages + [{"role": "user", "content": user}, {"role": "assistant", "content": response}]


def _sharegpt(row: dict, cols: dict, tags: dict) -> list[dict]:
    col = cols.get("messages", "conversations")
    turns = row.get(col)
    if not isinstance(turns, list) or not turns:
        raise DataError(f"'{col}' must be a non-empty list of messages")
    role_map = {tags.get("user_tag", "human"): "user", tags.get("assistant_tag", "gpt"): "assistant",
                tags.get("system_tag", "system"): "system", tags.get("observation_tag", "observation"): "tool",
                tags.get("function_tag", "function_call"): "assistant", "user": "user", "assistant": "assistant"}
    messages = []
    system = _text(row, cols.get("system", ""), False, "the system prompt") if cols.get("system") in row else ""
    if system:
        messages.append({"role": "system", "content": system})
    for j, turn in enumerate(turns, start=1):
        if not isinstance(turn, dict):
            raise DataError(f"message {j} must be an object with '{tags['role_tag']}' and '{tags['content_tag']}'")
        role = role_map.get(turn.get(tags["role_tag"]))
        if role is None:
            raise DataError(f"message {j}: unknown role {turn.get(tags['role_tag'])!r} "
                            f"(expected one of {sorted(k for k in role_map if k)})")
        content = turn.get(tags["content_tag"])
        if not isinstance(content, str):
            raise DataError(f"message {j}: '{tags['content_tag']}' must be text")
        if role == "system" and messages:
            raise DataError(f"message {j}: a system message may only come first")
        messages.append({"role": role, "content": content})
    if not any(m["role"] == "assistant" and m["content"].strip() for m in messages):
        raise DataError("no non-empty assistant message to train on")
    return messages


def spec_from_dataset_info(info_path: Path, name: str = "") -> list[tuple[Path, FormatSpec | None]]:
    """Files + declared formats of a LLaMA-Factory dataset_info.json (one entry by name, or every SFT entry)."""
    try:
        info = json.loads(info_path.read_text(encoding="utf-8-sig"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{info_path}: not valid JSON ({exc})") from None
    if not isinstance(info, dict) or not info:
        raise DataError(f"{info_path}: expected an object of dataset entries")
    if name and name not in info:
        raise DataError(f"{info_path}: no entry '{name}' (entries: {', '.join(sorted(info))})")
    names = [name] if name else [n for n, e in info.items() if isinstance(e, dict) and not e.get("ranking")]
    out = []
    for n in names:
        entry = info[n]
        if not isinstance(entry, dict) or not entry.get("file_name"):
            raise DataError(f"{info_path}: entry '{n}' has no file_name (hub datasets cannot be fetched here)")
        if entry.get("ranking"):
            raise DataError(f"{info_path}: entry '{n}' is preference (ranking) data: use it with DPO or reward modelling")
        fmt = entry.get("formatting", "alpaca")
        if fmt not in ("alpaca", "sharegpt"):
            raise DataError(f"{info_path}: entry '{n}': formatting '{fmt}' is not supported (alpaca, sharegpt)")
        base = dict(ALPACA_COLUMNS if fmt == "alpaca" else SHAREGPT_COLUMNS)
        columns = dict(base, **(entry.get("columns") or {}))
        tags = dict(SHAREGPT_TAGS, **(entry.get("tags") or {})) if fmt == "sharegpt" else {}
        target = info_path.parent / entry["file_name"]
        files = sorted(p for p in target.iterdir() if p.suffix.lower() in (".json", ".jsonl", ".csv", ".parquet")) \
            if target.is_dir() else [target]
        if not target.exists():
            raise DataError(f"{info_path}: entry '{n}': file {target} not found")
        out += [(f, FormatSpec(fmt, columns, tags)) for f in files]
    return out
