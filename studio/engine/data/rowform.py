"""Rows <-> the Data tab's format-fitting edit form: plain functions, no torch, no Gradio.

``row_to_form(row, fs)`` gives ``{"kind", "fields"}``: the form fields that fit the row's format (an alpaca row gets
system/instruction/input/output, a conversation gets system + a turns table, preference prompt/chosen/rejected, KTO
prompt/completion/label); ``kind`` is ``"raw"`` (JSON editor only) for anything else. ``form_to_row(fields, row, fs)``
writes the edited fields back into a copy of ``row`` in the row's OWN format: the dataset's column names, its turn keys
(``from``/``value`` or ``role``/``content``) and role names, every key the form does not show. A field left as shown
keeps the original value exactly, so row -> form -> row is the identity.

    form = row_to_form(row, view.format_of(i)); form["fields"]["output"] = "new answer"
    new_row = form_to_row(form["fields"], row, view.format_of(i))  # then Workspace.update_row (validated, versioned)
"""

from __future__ import annotations

import json

from studio.engine.data.formats import OPENAI_TAGS, SHAREGPT_TAGS, DataError, FormatSpec, parse_label

# form field -> the FormatSpec column role it edits (the column name comes from the dataset's own spec)
TEXT_FIELDS = {"system": "system", "instruction": "prompt", "input": "query", "output": "response", "prompt": "prompt",
               "chosen": "chosen", "rejected": "rejected", "completion": "completion", "text": "text"}
_FIELDS_OF = {  # format -> the fields its form shows (order = display order)
    "alpaca": ("system", "instruction", "input", "output", "history"),
    "kto_alpaca": ("system", "instruction", "input", "output", "history", "label"),
    "pref_alpaca": ("system", "instruction", "input", "history", "chosen", "rejected"),
    "sharegpt": ("system", "turns"), "messages": ("system", "turns"),
    "kto_sharegpt": ("system", "turns", "label"), "pref_sharegpt": ("system", "turns", "chosen", "rejected"),
    "pref_prompt": ("system", "prompt", "chosen", "rejected"), "pref_implicit": ("chosen", "rejected"),
    "kto": ("system", "prompt", "completion", "label"), "text": ("text",),
}
KINDS = {"alpaca": "alpaca", "kto_alpaca": "alpaca", "pref_alpaca": "preference", "sharegpt": "chat", "messages": "chat",
         "kto_sharegpt": "chat", "pref_sharegpt": "preference", "pref_prompt": "preference", "pref_implicit": "preference",
         "kto": "kto", "text": "text"}


def row_to_form(row: dict, fs: FormatSpec | None) -> dict:
    """``{"kind", "fields"}`` of a row: ``kind`` alpaca | chat | preference | kto | text | raw (no form fits)."""
    fields = _FIELDS_OF.get(fs.format) if fs is not None and isinstance(row, dict) else None
    if not fields or ("turns" in fields and not _is_turns(row.get(fs.columns.get("messages", "conversations")))):
        return {"kind": "raw", "fields": {}}
    c, out = fs.columns, {}
    for name in fields:
        if name == "turns":
            out["turns"] = turns_of(row.get(c.get("messages", "conversations")), _tags(row, fs))
        elif name == "history":
            if c.get("history") in row:
                out["history"] = show(row[c["history"]])
        elif name == "label":
            out["label"] = _label(row.get(c.get("kto_tag", "label")))
        else:
            col = _column(fs, name)
            if col:
                out[name] = show(row.get(col))
    return {"kind": KINDS[fs.format], "fields": out}


def form_to_row(fields: dict, row: dict, fs: FormatSpec) -> dict:
    """A copy of ``row`` with the form's ``fields`` written into their columns (same format, extra keys kept)."""
    new = dict(row)
    c = fs.columns
    for name, value in fields.items():
        if name == "history":  # shown read-only: edit history in the JSON editor
            continue
        if name == "turns":
            col = c.get("messages", "conversations")
            _put(new, col, store_turns(row.get(col), value, _tags(row, fs)), col in row)
        elif name == "label":
            col = c.get("kto_tag", "label")
            _put(new, col, store_label(row.get(col), bool(value), col in row), True)
        else:
            col = _column(fs, name)
            if not col:
                raise DataError(f"the {fs.format} format has no '{name}' field")
            _put(new, col, store(row.get(col), "" if value is None else str(value), name), col in row)
    return new


def _put(row: dict, col: str, value, present: bool) -> None:
    """Set ``row[col]``; an empty value for a column the row did not have adds nothing."""
    if present or value not in ("", None, []):
        row[col] = value


def _column(fs: FormatSpec, name: str) -> str:
    if name == "completion" and fs.format != "kto":
        return ""
    return fs.columns.get(TEXT_FIELDS.get(name, ""), "")


# ----------------------------------------------------------------------------------------------------------------------------
# One value: text, a message (or a one-message list), or anything else as JSON


def show(value) -> str:
    """A cell as the form shows it: text as is, one message as its content, anything else as JSON."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    message = _single_message(value)
    if message is not None:
        return message[_content_key(message)]
    return json.dumps(value, ensure_ascii=False, indent=2)


def store(old, text: str, name: str = "value"):
    """The value to save for a field showing ``text`` whose original value was ``old`` (same type where possible)."""
    if text == show(old):
        return old
    if old is None or isinstance(old, (str, int, float)):
        return text
    message = _single_message(old)
    if message is not None:
        edited = dict(message, **{_content_key(message): text})
        return [edited] if isinstance(old, list) else edited
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(f"'{name}' holds a conversation: it must stay valid JSON ({exc.msg}, line {exc.lineno})") from None


def _single_message(value) -> dict | None:
    msg = value[0] if isinstance(value, list) and len(value) == 1 else value
    if isinstance(msg, dict) and isinstance(msg.get(_content_key(msg)), str):
        return msg
    return None


def _content_key(message: dict) -> str:
    return "content" if "content" in message or "value" not in message else "value"


def _label(value) -> bool:
    try:
        return parse_label(value)
    except DataError:
        return False


def store_label(old, value: bool, present: bool):
    """A KTO label in the row's own spelling (bool, 0/1, or "true"/"1"/"yes" text)."""
    if present and _label(old) == value and old is not None:
        return old
    if isinstance(old, bool) or not present or old is None:
        return value
    if isinstance(old, (int, float)):
        return int(value)
    pairs = {"true": ("true", "false"), "false": ("true", "false"), "1": ("1", "0"), "0": ("1", "0"),
             "yes": ("yes", "no"), "no": ("yes", "no")}
    yes, no = pairs.get(str(old).strip().lower(), ("true", "false"))
    return yes if value else no


# ----------------------------------------------------------------------------------------------------------------------------
# Conversations: a table of [role, content] rows


def _is_turns(value) -> bool:
    return isinstance(value, list) and all(isinstance(m, dict) for m in value)


def _tags(row: dict, fs: FormatSpec) -> dict:
    """The row's turn keys and role names (from/value + human/gpt, or role/content + user/assistant)."""
    turns = row.get(fs.columns.get("messages", "conversations"))
    first = next((m for m in turns if isinstance(m, dict)), None) if isinstance(turns, list) else None
    if first is None or (fs.tags and fs.tags.get("role_tag") in first):
        return dict(fs.tags or OPENAI_TAGS)  # a dataset_info.json entry's own tags win
    return dict(OPENAI_TAGS if "role" in first else SHAREGPT_TAGS)


def turns_of(turns: list, tags: dict) -> list[list[str]]:
    """``[[role, content], ...]`` with the dataset's own role names (``human``/``gpt`` stay as they are)."""
    return [[show(m.get(tags["role_tag"])), show(m.get(tags["content_tag"]))] for m in turns or []]


def store_turns(old: list | None, table, tags: dict) -> list[dict]:
    """Table rows -> turns in the row's own keys. Turn k keeps old turn k's other keys; an empty table row is dropped;
    the generic roles user/assistant/system/tool become the dataset's role names (``user`` -> ``human`` in sharegpt)."""
    old = old if isinstance(old, list) else []
    generic = {"user": tags.get("user_tag", "user"), "assistant": tags.get("assistant_tag", "assistant"),
               "system": tags.get("system_tag", "system"), "tool": tags.get("observation_tag", "tool")}
    known = {tags.get(k) for k in ("user_tag", "assistant_tag", "system_tag", "observation_tag", "function_tag")}
    rk, ck = tags["role_tag"], tags["content_tag"]
    out = []
    for role, content in _table_rows(table):
        if not role and not content:
            continue
        base = old[len(out)] if len(out) < len(old) and isinstance(old[len(out)], dict) else {}
        if role not in known and not (rk in base and role == show(base[rk])):
            role = generic.get(role.lower(), role)
        out.append(dict(base, **{rk: store(base[rk], role, "role") if rk in base else role,
                                 ck: store(base[ck], content, "content") if ck in base else content}))
    return old if out == old else out


def _table_rows(table) -> list[tuple[str, str]]:
    """[[role, content], ...] from a list of lists/dicts or a DataFrame (empty cells -> "")."""
    if hasattr(table, "values") and hasattr(table, "columns"):  # a pandas DataFrame from the UI's table
        table = table.values.tolist()
    rows = []
    for r in table or []:
        pair = (r.get("role"), r.get("content")) if isinstance(r, dict) else (list(r) + [None, None])[:2]
        rows.append(tuple("" if v is None or v != v else str(v).strip("\r") for v in pair))
    return rows
