"""The data studio's engine: open any dataset lazily, page and search it, compute stats, render rows exactly as training
sees them, and map unknown columns to roles. Editing with versions lives in ``studio.engine.data.workspace``, mixing in
``studio.engine.data.mix``. Every function returns plain data (dicts, dataclasses, DataFrames); the Data tab and
``studio data inspect`` call the same functions.

    from studio.engine.data import view as ds
    view = ds.open_dataset("data/orca.parquet", mapping={"question": "prompt", "chatgpt": "chosen", ...})
    ds.page(view, 1, 20); ds.stats(view, tokenizer, cutoff_len=1024); ds.render_row(view, 0, tokenizer)

torch/transformers are never imported here; a tokenizer object is passed in by the caller.
"""

from __future__ import annotations

import hashlib
import json
from bisect import bisect_right
from dataclasses import dataclass, field
from pathlib import Path

from studio.engine.access import FULL, Access
from studio.engine.data import dataset_info
from studio.engine.data import formats as F
from studio.engine.data.load import Rendered, parse_spec, render_example, resolve
from studio.engine.data.formats import DataError, FormatSpec
from studio.engine.data.rowfile import RowFile

MAX_CELL = 300  # characters per table cell in a page: one long answer must not flood the table


@dataclass
class DatasetView:
    """An opened dataset: its files (lazy row access), the format of each, and what was detected or declared."""
    spec: str
    files: list[RowFile]
    formats: list[FormatSpec | None]  # None: the columns match no known format (map them)
    entry: str = ""  # the dataset_info.json entry, when opened from a folder
    entries: list[str] = field(default_factory=list)  # every entry of that dataset_info.json
    format_error: str = ""  # why the format could not be detected
    mapping: dict = field(default_factory=dict)  # {source column: role} applied, if any
    _starts: list[int] = field(default_factory=list, repr=False)

    def __post_init__(self):
        total, self._starts = 0, []
        for f in self.files:
            self._starts.append(total)
            total += len(f)

    def __len__(self) -> int:
        return self._starts[-1] + len(self.files[-1]) if self.files else 0

    @property
    def format(self) -> str:
        fs = self.formats[0] if self.formats else None
        return fs.format if fs else "unknown"

    @property
    def columns(self) -> list[str]:
        cols: dict[str, None] = {}
        for f in self.files:
            cols.update(dict.fromkeys(f.columns))
        return list(cols)

    def locate(self, index: int) -> tuple[int, int]:
        if not 0 <= index < len(self):
            raise DataError(f"{self.spec}: row {index} does not exist (the dataset has {len(self)} rows)")
        k = bisect_right(self._starts, index) - 1
        return k, index - self._starts[k]

    def row(self, index: int) -> dict:
        k, local = self.locate(index)
        return self.files[k].row(local)

    def format_of(self, index: int) -> FormatSpec:
        k, _ = self.locate(index)
        if self.formats[k] is None:
            raise DataError(self.format_error or f"{self.files[k].path}: unknown format; map the columns")
        return self.formats[k]

    def where(self, index: int) -> str:
        """``FILE: line N`` of a row, for messages."""
        k, local = self.locate(index)
        f = self.files[k]
        return f"{f.path}: {'line' if f.lazy else 'row'} {f.line_of(local)}"

    def rows(self, start: int = 0, stop: int | None = None) -> list[dict]:
        stop = len(self) if stop is None else min(stop, len(self))
        out = []
        for k, f in enumerate(self.files):
            lo, hi = max(start - self._starts[k], 0), min(stop - self._starts[k], len(f))
            if lo < hi:
                out += f.rows(lo, hi)
        return out

    def iter_rows(self):
        for f in self.files:
            yield from f.iter_rows()


# ----------------------------------------------------------------------------------------------------------------------------
# Opening


def open_dataset(spec: str | Path, mapping: dict | None = None, access: Access = FULL) -> DatasetView:
    """Open ``PATH``, ``FOLDER`` or ``FOLDER#ENTRY`` (a ``@MAX`` suffix is ignored: the studio shows every row).

    The format comes from dataset_info.json, else from ``mapping`` ({source column: role}), else is detected from the
    first row; when nothing matches, the view still opens (browse it, then map the columns) with ``format_error`` set.
    ``access``: a web caller's policy (engine/access.py); the path must lie where it may read.
    """
    if access.confined:
        spec = access.spec(str(spec), "dataset")
    ref = parse_spec(str(spec))
    found = resolve(ref)
    entries, entry, pairs = found.entries, found.entry, found.files
    files = [RowFile(p, text_split=F.text_split_of(fs)) for p, fs in pairs]
    formats = [fs for _, fs in pairs]
    error = ""
    if mapping:
        first = files[0].row(0)
        fs = dataset_info.spec_from_mapping(mapping, {c: first.get(c) for c in files[0].columns})
        formats = [fs] * len(files)
    for k, fs in enumerate(formats):
        if fs is None:
            try:
                formats[k] = detect_any(files[k].row(0), files[k].path)
            except DataError as exc:
                error = error or str(exc)
    return DatasetView(str(spec), files, formats, entry, entries, error, dict(mapping or {}))


def detect_any(row: dict, path: Path | str = "") -> FormatSpec:
    """The format of a row of any kind the studio shows: SFT, preference, KTO or plain text."""
    return F.detect(row, path)


_ROLE_HINTS = {"system": "system", "system_prompt": "system", "question": "prompt", "instruction": "prompt", "prompt": "prompt",
               "query": "prompt", "input": "query", "context": "query", "answer": "response", "response": "response",
               "output": "response", "completion": "response", "chosen": "chosen", "rejected": "rejected",
               "label": "kto_tag", "kto_tag": "kto_tag", "text": "text", "content": "text", "conversations": "messages",
               "messages": "messages", "history": "history"}


def suggest_mapping(columns: list[str]) -> dict:
    """A first guess of {column: role} from common column names (the user confirms or changes it)."""
    out, used = {}, set()
    for col in columns:
        role = _ROLE_HINTS.get(col.strip().lower())
        if role and role not in used:
            out[col] = role
            used.add(role)
    return out


# ----------------------------------------------------------------------------------------------------------------------------
# Rows: normalise, page, search


def normalize(row: dict, fs: FormatSpec) -> dict:
    """A raw row -> what training uses: ``{"messages"}`` (SFT), ``{"text"}``, or the preference/KTO fields."""
    if fs.format == "text":
        return {"text": F.normalize_text(row, fs)}
    if fs.format in F.PREFERENCE_FORMATS:
        return F.normalize_preference_row(row, fs)
    if fs.format in F.KTO_FORMATS:
        return F.normalize_kto_row(row, fs)[0]
    return {"messages": F.normalize_row(row, fs)}


def page(view: DatasetView, number: int, size: int = 20, query: str = "", column: str = "") -> dict:
    """Page ``number`` (1-based) of the rows, or of the rows matching ``query``: {frame, page, pages, total, matches}."""
    import pandas as pd

    size = max(1, int(size))
    indices = search(view, query, column) if query else None
    total = len(view) if indices is None else len(indices)
    pages = max(1, -(-total // size))
    number = min(max(1, int(number or 1)), pages)
    lo, hi = (number - 1) * size, min(number * size, total)
    if indices is None:
        rows = list(zip(range(lo, hi), view.rows(lo, hi)))
    else:
        rows = [(i, view.row(i)) for i in indices[lo:hi]]
    frame = pd.DataFrame([{"#": i, **{k: cell(v) for k, v in r.items()}} for i, r in rows]) if rows else pd.DataFrame({"#": []})
    return {"frame": frame, "page": number, "pages": pages, "total": total, "rows": len(view),
            "indices": [i for i, _ in rows]}


def cell(value) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return text if len(text) <= MAX_CELL else text[:MAX_CELL] + "…"


def search(view: DatasetView, query: str, column: str = "") -> list[int]:
    """Indices of the rows whose text (every value, or one column) contains ``query`` (case-insensitive)."""
    needle = query.casefold()
    hits = []
    for i, row in enumerate(view.iter_rows()):
        value = row.get(column) if column else row
        if needle in _flat_text(value).casefold():
            hits.append(i)
    return hits


def _flat_text(value) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        return "\n".join(_flat_text(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return "\n".join(_flat_text(v) for v in value)
    return "" if value is None else str(value)


# ----------------------------------------------------------------------------------------------------------------------------
# Stats


def row_hash(row: dict) -> str:
    return hashlib.blake2b(json.dumps(row, ensure_ascii=False, sort_keys=True).encode("utf-8"), digest_size=16).hexdigest()


def stats(view: DatasetView, tokenizer=None, cutoff_len: int = 1024, bins: int = 10, max_examples: int = 5,
          token_sample: int = 0) -> dict:
    """Row count, empty / duplicate / invalid rows and, with a tokenizer, the token-length histogram under its chat template
    and how many rows ``cutoff_len`` would truncate. Rows are streamed: memory holds one hash per row.

    ``token_sample``: tokenize only that many evenly spaced valid rows (tokenizing costs ~0.3 ms a row on a small CPU);
    the truncated count is then scaled up and ``tokens.sampled`` says so. 0 = every row.
    """
    seen: dict[str, int] = {}
    empty, duplicates, invalid, lengths, pending = [], [], [], [], []
    step = max(1, -(-len(view) // token_sample)) if token_sample else 1
    for i, row in enumerate(view.iter_rows()):
        h = row_hash(row)
        if h in seen:
            duplicates.append(i)
        else:
            seen[h] = i
        if not any(_flat_text(v).strip() for v in row.values()):
            empty.append(i)
            continue
        try:
            norm = normalize(row, view.format_of(i))
        except DataError as exc:
            invalid.append(f"{view.where(i)}: {exc}")
            continue
        if tokenizer is not None and i % step == 0:
            pending.append(norm)
            if len(pending) >= 1024:
                lengths += token_lengths(tokenizer, pending)
                pending = []
    if tokenizer is not None and pending:
        lengths += token_lengths(tokenizer, pending)
    out = {"rows": len(view), "format": view.format, "empty_rows": len(empty), "empty_examples": empty[:max_examples],
           "duplicate_rows": len(duplicates), "duplicate_examples": duplicates[:max_examples],
           "invalid_rows": len(invalid), "invalid_examples": invalid[:max_examples], "cutoff_len": cutoff_len}
    if tokenizer is not None:
        out.update(_length_stats(lengths, cutoff_len, bins))
        valid = len(view) - len(empty) - len(invalid)
        if step > 1 and lengths:
            out["tokens"]["sampled"] = len(lengths)
            out["truncated_rows"] = round(out["truncated_rows"] * valid / len(lengths))
    return out


def _length_stats(lengths: list[int], cutoff_len: int, bins: int) -> dict:
    import numpy as np

    if not lengths:
        return {"tokens": {"count": 0}, "histogram": [], "truncated_rows": 0}
    arr = np.asarray(lengths)
    counts, edges = np.histogram(arr, bins=min(bins, max(1, len(set(lengths)))))
    hist = [{"from": int(edges[j]), "to": int(edges[j + 1]), "rows": int(c)} for j, c in enumerate(counts)]
    return {"tokens": {"count": int(arr.size), "total": int(arr.sum()), "min": int(arr.min()),
                       "mean": round(float(arr.mean()), 1),
                       "p50": int(np.percentile(arr, 50)), "p95": int(np.percentile(arr, 95)), "max": int(arr.max())},
            "histogram": hist, "truncated_rows": int((arr > cutoff_len).sum())}


def token_lengths(tokenizer, norms: list[dict]) -> list[int]:
    """Tokens of normalised rows under the chat template (the longer side of a preference pair), tokenized in one batch."""
    texts, owners = [], []
    for k, norm in enumerate(norms):
        if "text" in norm:
            convs = [norm["text"] + (tokenizer.eos_token or "")]
        else:
            convs = [tokenizer.apply_chat_template(c, tokenize=False) for c in
                     ([norm["messages"]] if "messages" in norm else _pair_conversations(norm).values())]
        texts += convs
        owners += [k] * len(convs)
    out = [0] * len(norms)
    for k, ids in zip(owners, tokenizer(texts, add_special_tokens=False)["input_ids"]):
        out[k] = max(out[k], len(ids))
    return out


# ----------------------------------------------------------------------------------------------------------------------------
# Rendering


def render_row(view: DatasetView, index: int, tokenizer, cutoff_len: int = 1024, train_on_prompt: bool = False,
               system: str = "") -> dict:
    """Row ``index`` as the model sees it: {format, row, views: [{title, text, segments, num_tokens, num_trained, ...}]}."""
    row = view.row(index)
    try:
        norm = normalize(row, view.format_of(index))
        views = render_normalized(tokenizer, norm, cutoff_len, train_on_prompt, system)
    except DataError as exc:
        raise DataError(f"{view.where(index)}: {exc}") from None
    return {"index": index, "format": view.format_of(index).format, "row": row, "views": views}


def render_normalized(tokenizer, norm: dict, cutoff_len: int = 1024, train_on_prompt: bool = False,
                      system: str = "") -> list[dict]:
    if "text" in norm:
        return [_view("text", _render_text(tokenizer, norm["text"], cutoff_len))]
    if "messages" in norm:
        return [_view("conversation", render_example(tokenizer, norm["messages"], cutoff_len, train_on_prompt, system))]
    out = [_view(title, render_example(tokenizer, conv, cutoff_len, train_on_prompt, system))
           for title, conv in _pair_conversations(norm).items()]
    if "label" in norm:
        out[0]["label"] = bool(norm["label"])
    return out


def _pair_conversations(norm: dict) -> dict[str, list[dict]]:
    """prompt + chosen / prompt + rejected (preference) or prompt + completion (KTO) as full conversations."""
    prompt = list(norm.get("prompt") or [])
    sides = ("chosen", "rejected") if "chosen" in norm else ("completion",)
    return {side: prompt + _as_messages(norm[side]) for side in sides}


def _as_messages(value) -> list[dict]:
    return [{"role": "assistant", "content": value}] if isinstance(value, str) else list(value)


def _render_text(tokenizer, text: str, cutoff_len: int) -> Rendered:
    """Continued pre-training: the text plus EOS, every token trained."""
    eos = tokenizer.eos_token or ""
    full = text + eos
    enc = tokenizer(full, add_special_tokens=False)
    ids = list(enc["input_ids"])
    truncated = len(ids) > cutoff_len
    ids = ids[:cutoff_len]
    shown = tokenizer.decode(ids) if truncated else full
    return Rendered(text=full, input_ids=ids, labels=list(ids), segments=[(shown, True)], num_tokens=len(ids),
                    num_trained=len(ids), truncated=truncated)


def _view(title: str, r: Rendered) -> dict:
    return {"title": title, "text": r.text, "segments": r.segments, "num_tokens": r.num_tokens,
            "num_trained": r.num_trained, "truncated": r.truncated}


def validate_row(row: dict, fs: FormatSpec, tokenizer=None, cutoff_len: int = 1024) -> dict:
    """Normalise (and with a tokenizer, render) one row; raises DataError(reason) when training could not use it."""
    if not isinstance(row, dict):
        raise DataError(f"a row must be a JSON object, got {type(row).__name__}")
    norm = normalize(row, fs)
    if tokenizer is not None:
        render_normalized(tokenizer, norm, cutoff_len)
    return norm


def row_template(fs: FormatSpec | None) -> dict:
    """An empty row of a format, with its real column names: what the Data tab's editor offers for a new row."""
    if fs is None:
        return {}
    c = fs.columns
    if fs.format == "text":
        return {c.get("text", "text"): ""}
    if fs.format in ("sharegpt", "messages", "pref_sharegpt", "kto_sharegpt"):
        tags = fs.tags or F.OPENAI_TAGS
        turn = [{tags["role_tag"]: tags["user_tag"], tags["content_tag"]: ""},
                {tags["role_tag"]: tags["assistant_tag"], tags["content_tag"]: ""}]
        row = {c.get("messages", "conversations"): turn if fs.format in ("sharegpt", "messages", "kto_sharegpt") else turn[:1]}
    elif fs.format == "prompt_completion":
        return {"prompt": [{"role": "user", "content": ""}], "completion": [{"role": "assistant", "content": ""}]}
    else:
        keys = ("prompt", "query", "response", "completion", "chosen", "rejected")
        row = {c[k]: "" for k in keys if c.get(k) and not (k in ("response", "completion") and fs.format.startswith("pref_"))}
    for k in ("chosen", "rejected") if fs.format.startswith("pref_") else ():
        row[c.get(k, k)] = ""
    if fs.format.startswith("kto"):
        row[c.get("kto_tag", "label")] = True
    return row
