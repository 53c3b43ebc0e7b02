"""Reading dataset files and turning rows of each known format into chat messages.

Formats and their columns follow LLaMA-Factory's ``dataset_info.json`` conventions, so its dataset folders load unchanged:
alpaca (prompt=instruction, query=input, response=output, system, history) and sharegpt (messages=conversations with
role/content tags ``from``/``value``, ``human``/``gpt``); OpenAI ``messages`` is sharegpt with role/content/user/assistant.
Pure Python + pandas (for CSV/Parquet): no torch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from studio.engine.data.textfile import (DataError, check_csv_shape, check_rows_nesting, jsonl_lines, loads, parse_line,
                                         read_text, table_rows)


SUFFIXES = (".json", ".jsonl", ".csv", ".parquet", ".txt")  # every dataset file type the studio reads (Data tab and training)
# how a plain-text (.txt) file is cut into documents: one per line (LLaMA-Factory's reading), or one per block of lines
# separated by a blank line; a dataset_info.json entry chooses with "text_split" (default: line)
TEXT_SPLITS = ("line", "blank_line")


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


def read_raw_rows(path: Path, offset: int = 0, limit: int | None = None, text_split: str = "line") -> tuple[list[dict], int]:
    """Rows ``offset .. offset+limit`` of a file as dicts, and the file's total row count. A ``.txt`` file's rows are
    ``{"text": document}``, cut as ``text_split`` says."""
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
    elif suffix == ".txt":
        rows = [{"text": doc} for doc in text_documents(path, text_split)]
    else:
        raise DataError(f"{path}: unsupported file type '{suffix}' (use {', '.join(SUFFIXES)})")
    end = None if limit is None else offset + limit
    return rows[offset:end], len(rows)


def text_documents(path: Path, text_split: str = "line") -> list[str]:
    """The documents of a plain-text file: every non-blank line, or every blank-line-separated block (inner line breaks
    kept); trailing spaces and the line ends are not part of a document."""
    if text_split not in TEXT_SPLITS:
        raise DataError(f"{path}: text_split {text_split!r} is not one of {', '.join(TEXT_SPLITS)}")
    lines = read_text(path).splitlines()
    if text_split == "line":
        return [line.rstrip() for line in lines if line.strip()]
    docs, block = [], []
    for line in lines + [""]:
        if line.strip():
            block.append(line.rstrip())
        elif block:
            docs.append("\n".join(block))
            block = []
    return docs


def _read_jsonl(path: Path) -> list[dict]:
    return [parse_line(path, lineno, line) for lineno, _, line in jsonl_lines(path) if line.strip()]


def _read_json(path: Path) -> list[dict]:
    text = read_text(path)
    if not text.strip():
        raise DataError(f"{path}: the file is empty (nothing but white space or a byte-order mark)")
    try:
        data = loads(text, str(path))
    except DataError as exc:
        if "invalid JSON (Extra data" in str(exc):  # JSON Lines saved with a .json name
            return _read_jsonl(path)
        raise
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
    check_rows_nesting(path, data, text)
    return data


def _read_table(path: Path) -> list[dict]:
    import io

    import pandas as pd

    try:
        if path.suffix.lower() == ".csv":
            text = read_text(path)  # same encoding/binary checks as JSON
            check_csv_shape(path, text)
            df = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
        else:
            df = pd.read_parquet(path)
    except DataError:
        raise
    except Exception as exc:  # pandas/pyarrow raise many types for one user problem: an unreadable table
        raise DataError(f"{path}: cannot read as {path.suffix[1:].upper()}: {str(exc).splitlines()[0][:300]}") from None
    return table_rows(path, df)


# ----------------------------------------------------------------------------------------------------------------------------
# Formats


def detect(row: dict, path: Path | str = "", kind: str | None = None) -> FormatSpec:
    """The one format detector, shared by the Data tab and training, so both read a file the same way.

    ``kind=None``: whatever the row is (SFT, preference, KTO or plain text). ``kind`` 'sft', 'preference', 'kto' or
    'text': the row must be usable for that kind of training, else DataError says what the data is for."""
    keys = set(row)
    if {"chosen", "rejected"} <= keys:
        fs = detect_preference_format(row, path)
    elif "kto_tag" in keys or "label" in keys and (_boolish(row["label"]) or {"prompt", "completion"} <= keys):
        fs = detect_kto_format(row, path)
    else:
        fs = detect_text_format(row) or _sft_shape(row, path, hint=kind is None)
    found = kind_of(fs.format)
    if kind is None or found in USABLE_KINDS[kind]:
        return fs
    raise DataError(f"{path}: " + _misuse(found, kind, keys))


def detect_format(row: dict, path: Path | str = "") -> FormatSpec:
    """The SFT format of a row (``detect(row, path, "sft")``)."""
    return detect(row, path, "sft")


def kind_of(fmt: str) -> str:
    """Which kind of training a format feeds: 'sft', 'preference', 'kto' or 'text'."""
    if fmt == "text":
        return "text"
    if fmt in PREFERENCE_FORMATS:
        return "preference"
    return "kto" if fmt in KTO_FORMATS else "sft"


def _boolish(value) -> bool:
    try:
        parse_label(value)
    except DataError:
        return False
    return not isinstance(value, (int, float)) or isinstance(value, bool)  # a 0/1 column is rarely a KTO label


def _misuse(found: str, kind: str, keys: set) -> str:
    if kind == "sft":
        return {"preference": "preference data (chosen/rejected) is for reward modelling or DPO, not SFT",
                "kto": "unpaired preference data (completion + label) is for KTO, not SFT",
                "text": "plain-text rows (continued pre-training) are not supported by SFT; use instruction/output, "
                        "conversations or messages rows"}[found]
    if kind == "preference":
        return (f"not preference data: expected 'chosen' and 'rejected' columns (with 'prompt', 'instruction' or "
                f"'conversations'), got {sorted(keys)}")
    if kind == "kto":
        return f"not KTO data: expected prompt/completion/label (or chosen/rejected pairs), got {sorted(keys)}"
    return f"{found} data, not {kind}: {KIND_USE[found]}"


def _sft_shape(row: dict, path: Path | str = "", hint: bool = False) -> FormatSpec:
    keys = set(row)
    if isinstance(row.get("messages"), list):
        first = next((m for m in row["messages"] if isinstance(m, dict)), {})
        tags = OPENAI_TAGS if "role" in first else SHAREGPT_TAGS
        return FormatSpec("messages", dict(SHAREGPT_COLUMNS, messages="messages"), dict(tags))
    if isinstance(row.get("conversations"), list):
        first = next((m for m in row["conversations"] if isinstance(m, dict)), {})
        tags = OPENAI_TAGS if "role" in first else SHAREGPT_TAGS
        return FormatSpec("sharegpt", dict(SHAREGPT_COLUMNS), dict(tags))
    if "instruction" in keys and "output" in keys:
        return FormatSpec("alpaca", dict(ALPACA_COLUMNS))
    if isinstance(row.get("prompt"), list) and isinstance(row.get("completion"), list):
        return FormatSpec("prompt_completion", {"prompt": "prompt", "completion": "completion"}, dict(OPENAI_TAGS))
    if "prompt" in keys and ("completion" in keys or "response" in keys):
        resp = "completion" if "completion" in keys else "response"
        return FormatSpec("alpaca", dict(ALPACA_COLUMNS, prompt="prompt", query="", response=resp))
    raise DataError(f"{path}: cannot tell the format from the columns {sorted(keys)}; expected alpaca "
                    "(instruction, input, output), sharegpt (conversations) or messages"
                    + ("; or map the columns to roles" if hint else ""))


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


# which data kinds each kind of training can use (KTO unpairs preference pairs)
USABLE_KINDS = {"sft": ("sft",), "preference": ("preference",), "kto": ("kto", "preference"), "text": ("text",)}


KIND_USE = {"sft": "use it with SFT", "preference": "use it with DPO or reward modelling", "kto": "use it with KTO",
             "text": "plain text for continued pre-training"}


# ----------------------------------------------------------------------------------------------------------------------------
# Preference formats (reward model, DPO) and unpaired ones (KTO)
#
# Every preference row becomes TRL's conversational form with an explicit prompt:
#   {"prompt": [system?, user, (assistant, user)...], "chosen": [assistant], "rejected": [assistant]}
# and every KTO row  {"prompt": [...], "completion": [assistant], "label": True|False}.
# Accepted rows (the format name is what ``detect_preference_format`` / ``detect_kto_format`` return):
#   pref_prompt    {"prompt", "chosen", "rejected"[, "system"]}: each text or a list of messages
#   pref_implicit  {"chosen": [messages], "rejected": [messages]}: two whole conversations, same up to the last answer
#   pref_alpaca    {"instruction", "input", "chosen", "rejected"[, "system", "history"]}  (LLaMA-Factory ranking alpaca)
#   pref_sharegpt  {"conversations": [...prompt turns], "chosen": {"from", "value"}, "rejected": {...}}  (ranking sharegpt)
#   kto            {"prompt", "completion", "label"}: text or messages; label true (desirable) / false
#   kto_alpaca     {"instruction", "input", "output", "kto_tag"};  kto_sharegpt {"conversations", "kto_tag"}
# Messages may use role/content or from/value keys. A row that breaks these rules raises DataError(reason).

PREFERENCE_FORMATS = ("pref_prompt", "pref_implicit", "pref_alpaca", "pref_sharegpt")
KTO_FORMATS = ("kto", "kto_alpaca", "kto_sharegpt")
_ROLES = {"user": "user", "human": "user", "assistant": "assistant", "gpt": "assistant", "system": "system",
          "tool": "tool", "observation": "tool", "function_call": "assistant"}


def detect_preference_format(row: dict, path: Path | str = "") -> FormatSpec:
    """The preference format of a raw row (see the table above), or DataError naming the file and the columns seen."""
    keys = set(row)
    if not {"chosen", "rejected"} <= keys:
        raise DataError(f"{path}: not preference data: expected 'chosen' and 'rejected' columns (with 'prompt', "
                        f"'instruction' or 'conversations'), got {sorted(keys)}")
    if "instruction" in keys:
        return FormatSpec("pref_alpaca", dict(ALPACA_COLUMNS, chosen="chosen", rejected="rejected"))
    if "conversations" in keys or "messages" in keys:
        col = "conversations" if "conversations" in keys else "messages"
        return FormatSpec("pref_sharegpt", dict(SHAREGPT_COLUMNS, messages=col, chosen="chosen", rejected="rejected"))
    if "prompt" in keys:
        return FormatSpec("pref_prompt", {"prompt": "prompt", "chosen": "chosen", "rejected": "rejected", "system": "system"})
    return FormatSpec("pref_implicit", {"chosen": "chosen", "rejected": "rejected"})


def detect_kto_format(row: dict, path: Path | str = "") -> FormatSpec:
    """An unpaired (KTO) format, or a preference format (its pairs are split into one desirable + one undesirable row)."""
    keys = set(row)
    if {"chosen", "rejected"} <= keys:
        return detect_preference_format(row, path)
    label = "kto_tag" if "kto_tag" in keys else "label"
    if label in keys and "instruction" in keys:
        return FormatSpec("kto_alpaca", dict(ALPACA_COLUMNS, kto_tag=label))
    if label in keys and ("conversations" in keys or "messages" in keys):
        col = "conversations" if "conversations" in keys else "messages"
        return FormatSpec("kto_sharegpt", dict(SHAREGPT_COLUMNS, messages=col, kto_tag=label))
    if {"prompt", "completion", "label"} <= keys:
        return FormatSpec("kto", {"prompt": "prompt", "completion": "completion", "kto_tag": "label", "system": "system"})
    raise DataError(f"{path}: not KTO data: expected prompt/completion/label (or chosen/rejected pairs), got {sorted(keys)}")


def normalize_preference_row(row: dict, fs: FormatSpec) -> dict:
    """One raw preference row -> ``{"prompt": [...], "chosen": [...], "rejected": [...]}`` (TRL conversational)."""
    c = fs.columns
    if fs.format == "pref_implicit":
        chosen = _as_messages(row.get(c["chosen"]), c["chosen"], "assistant")
        rejected = _as_messages(row.get(c["rejected"]), c["rejected"], "assistant")
        n = 0
        while n < min(len(chosen), len(rejected)) - 1 and chosen[n] == rejected[n]:
            n += 1
        prompt, chosen, rejected = chosen[:n], chosen[n:], rejected[n:]
        if not prompt or prompt[-1]["role"] != "user":
            raise DataError("'chosen' and 'rejected' must be the same conversation up to a last user message, "
                            "then differ in the answer")
    else:
        prompt = _preference_prompt(row, fs)
        chosen = _as_messages(row.get(c["chosen"]), c["chosen"], "assistant")
        rejected = _as_messages(row.get(c["rejected"]), c["rejected"], "assistant")
    for name, answer in (("chosen", chosen), ("rejected", rejected)):
        if not answer or any(m["role"] != "assistant" for m in answer) or not any(m["content"].strip() for m in answer):
            raise DataError(f"'{name}' must be a non-empty assistant answer")
    if chosen == rejected:
        raise DataError("'chosen' and 'rejected' are identical: nothing to prefer")
    return {"prompt": prompt, "chosen": chosen, "rejected": rejected}


def normalize_kto_row(row: dict, fs: FormatSpec) -> list[dict]:
    """One raw row -> KTO rows ``{"prompt", "completion", "label"}``: one row, or two for a preference pair."""
    if fs.format in PREFERENCE_FORMATS:
        pair = normalize_preference_row(row, fs)
        return [{"prompt": pair["prompt"], "completion": pair["chosen"], "label": True},
                {"prompt": pair["prompt"], "completion": pair["rejected"], "label": False}]
    c = fs.columns
    label = parse_label(row.get(c["kto_tag"]), c["kto_tag"])
    if fs.format == "kto":
        prompt = _with_row_system(row, c, _as_messages(row.get(c["prompt"]), c["prompt"], "user"))
        completion = _as_messages(row.get(c["completion"]), c["completion"], "assistant")
    else:  # alpaca / sharegpt: the last assistant message is the completion, the rest the prompt
        messages = _alpaca(row, c) if fs.format == "kto_alpaca" else _sharegpt(row, c, fs.tags or _tags_of(row, c))
        if messages[-1]["role"] != "assistant":
            raise DataError("the conversation must end with the assistant answer that is labelled")
        prompt, completion = messages[:-1], messages[-1:]
    if not prompt or prompt[-1]["role"] != "user":
        raise DataError("the prompt must end with a user message")
    if any(m["role"] != "assistant" for m in completion) or not any(m["content"].strip() for m in completion):
        raise DataError(f"'{c.get('completion', 'output')}' must be a non-empty assistant answer")
    return [{"prompt": prompt, "completion": completion, "label": label}]


def parse_label(value, col: str = "label") -> bool:
    """A KTO label: true/false, 1/0, yes/no (CSV cells arrive as text)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("true", "false", "1", "0", "yes", "no"):
        return value.strip().lower() in ("true", "1", "yes")
    raise DataError(f"'{col}' must be true (desirable) or false (undesirable), got {value!r}")


def _preference_prompt(row: dict, fs: FormatSpec) -> list[dict]:
    c = fs.columns
    if fs.format == "pref_alpaca":  # the alpaca conversation built with a placeholder answer, minus that answer
        messages = _alpaca({**row, "output": "-"}, dict(c, response="output"))[:-1]
    elif fs.format == "pref_sharegpt":
        turns = row.get(c["messages"])
        if not isinstance(turns, list) or not turns:
            raise DataError(f"'{c['messages']}' must be a non-empty list of messages (the prompt turns)")
        messages = _with_row_system(row, c, _as_messages(turns, c["messages"], "user"))
    else:
        messages = _with_row_system(row, c, _as_messages(row.get(c["prompt"]), c["prompt"], "user"))
    if not messages or messages[-1]["role"] != "user":
        raise DataError("the prompt must end with a user message")
    return messages


def _with_row_system(row: dict, cols: dict, messages: list[dict]) -> list[dict]:
    system = _text(row, cols.get("system", ""), False, "the system prompt") if cols.get("system") in row else ""
    if system and messages and messages[0]["role"] != "system":
        return [{"role": "system", "content": system}] + messages
    return messages


def _tags_of(row: dict, cols: dict) -> dict:
    first = next((m for m in row.get(cols.get("messages", ""), None) or [] if isinstance(m, dict)), {})
    return dict(OPENAI_TAGS if "role" in first else SHAREGPT_TAGS)


def _as_messages(value, col: str, default_role: str) -> list[dict]:
    """Text -> one message of ``default_role``; a message object or a list of them (role/content or from/value) -> messages."""
    if isinstance(value, str):
        if not value.strip():
            raise DataError(f"'{col}' is empty")
        return [{"role": default_role, "content": value}]
    if isinstance(value, dict):
        value = [value]
    if not isinstance(value, list) or not value:
        raise DataError(f"'{col}' must be text or a non-empty list of messages, got {type(value).__name__}")
    out = []
    for j, msg in enumerate(value, start=1):
        if not isinstance(msg, dict):
            raise DataError(f"'{col}': message {j} must be an object with role/content (or from/value)")
        role = _ROLES.get(msg.get("role", msg.get("from")))
        content = msg.get("content", msg.get("value"))
        if role is None:
            raise DataError(f"'{col}': message {j}: unknown role {msg.get('role', msg.get('from'))!r} "
                            f"(expected one of {sorted(_ROLES)})")
        if not isinstance(content, str):
            raise DataError(f"'{col}': message {j}: the content must be text")
        if role == "system" and out:
            raise DataError(f"'{col}': message {j}: a system message may only come first")
        out.append({"role": role, "content": content})
    return out


# ----------------------------------------------------------------------------------------------------------------------------
# Plain text (continued pre-training)

TEXT_COLUMNS = ("text", "content")


def detect_text_format(row: dict) -> FormatSpec | None:
    """Rows that are one piece of text (``{"text": ...}``): continued pre-training data; None for anything else."""
    strings = [k for k, v in row.items() if isinstance(v, str)]
    for col in TEXT_COLUMNS:
        if col in strings and len(row) <= 2 and not set(row) & {"instruction", "output", "prompt", "response", "completion"}:
            return FormatSpec("text", {"text": col})
    return None


def text_split_of(fs: FormatSpec | None) -> str:
    """How a .txt file read with format ``fs`` is cut into documents (a dataset_info.json entry's ``text_split``)."""
    return (fs.tags or {}).get("text_split", "line") if fs is not None and fs.format == "text" else "line"


def normalize_text(row: dict, fs: FormatSpec) -> str:
    text = _text(row, fs.columns.get("text", "text"), True, "the text")
    if not text.strip():
        raise DataError(f"'{fs.columns.get('text', 'text')}' is only whitespace")
    return text
