"""Datasets: read files, detect their format, normalise rows to chat messages, render them through the chat template.

Formats: alpaca (instruction/input/output[/system/history]), sharegpt (conversations with from/value), OpenAI-style
``messages``; files: .json, .jsonl, .csv, .parquet; a folder with a LLaMA-Factory ``dataset_info.json`` loads as is.
A dataset spec string is ``PATH[#NAME][@MAX]`` (NAME: an entry of dataset_info.json, MAX: row cap).

Every bad row is reported with its file, row number and reason: it stops the load (``on_bad_row="error"``) or is
skipped and counted (``"skip"``); nothing is dropped silently.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from studio.engine.data.dataset_info import dataset_info_entries, spec_from_dataset_info
from studio.engine.data.formats import (SUFFIXES, DataError, FormatSpec, detect, normalize_kto_row,  # noqa: F401
                                        normalize_preference_row, normalize_row, normalize_text, read_raw_rows,
                                        text_split_of)


@dataclass
class LoadedDataset:
    source: str
    format: str
    records: list[dict]
    total_rows: int
    skipped: list[str] = field(default_factory=list)  # "file: row N: reason" for each skipped row


@dataclass
class DatasetRef:
    path: Path
    name: str = ""
    max_rows: int = 0


def parse_spec(spec: str) -> DatasetRef:
    """``data/x.jsonl@100`` or ``data_dir#alpaca_zh@50`` -> DatasetRef."""
    text = spec.strip()
    max_rows = 0
    m = re.search(r"@(\d+)$", text)
    if m:
        max_rows, text = int(m.group(1)), text[: m.start()]
    name = ""
    if "#" in text:
        text, name = text.rsplit("#", 1)
    return DatasetRef(Path(text).expanduser(), name.strip(), max_rows)


@dataclass
class Resolved:
    """What a dataset spec points at: the files, each with its declared format (None: detect it from the rows), and for a
    dataset_info.json folder its entry names and the entry taken ('' when every entry of a kind is taken)."""

    files: list[tuple[Path, FormatSpec | None]]
    entries: list[str] = field(default_factory=list)
    entry: str = ""


def resolve(ref: DatasetRef, kind: str | None = None) -> Resolved:
    """The one resolver of dataset specs, shared by the Data tab (``kind=None``: the named entry, else the first) and
    training (``kind`` 'sft', 'preference', 'kto': the named entry, else every entry of that kind)."""
    path = ref.path
    try:
        found = path.exists()
    except (OSError, ValueError) as exc:  # a name too long, or a NUL byte in it
        raise DataError(f"{str(path)[:200]!r}: not a usable path ({getattr(exc, 'strerror', None) or exc})") from None
    if not found:
        raise DataError(f"{path}: no such file or folder")
    if path.is_dir():
        info = path / "dataset_info.json"
        if info.is_file():
            entries = dataset_info_entries(info)
            name = ref.name or (entries[0] if kind is None else "")
            return Resolved(spec_from_dataset_info(info, name, kind), entries, name)
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in SUFFIXES and p.is_file())
        if not files:
            raise DataError(f"{path}: folder has no dataset_info.json and no {', '.join(SUFFIXES)} files")
        return Resolved([(f, None) for f in files])
    if ref.name:
        raise DataError(f"{path}#{ref.name}: '#NAME' picks an entry of a folder's dataset_info.json; {path} is a file")
    if path.suffix.lower() not in SUFFIXES:
        raise DataError(f"{path}: unsupported file type '{path.suffix}' (use {', '.join(SUFFIXES)})")
    return Resolved([(path, None)])


def resolve_files(ref: DatasetRef, kind: str = "sft") -> list[tuple[Path, FormatSpec | None]]:
    """The files behind a spec for training data of ``kind`` (see ``resolve``)."""
    return resolve(ref, kind).files


# kind -> one raw row -> its records
_ROW_READERS = {
    "sft": lambda row, fs: [{"messages": normalize_row(row, fs)}],
    "preference": lambda row, fs: [normalize_preference_row(row, fs)],
    "kto": normalize_kto_row,
    "text": lambda row, fs: [{"text": normalize_text(row, fs)}],
}


def load_dataset_spec(spec: str, on_bad_row: str = "error", max_rows: int = 0, kind: str = "sft") -> LoadedDataset:
    """Load one dataset spec into normalised records: ``{"messages": [...]}`` for SFT; for ``kind`` 'preference' / 'kto'
    the pairs / labelled answers of ``dataformats.normalize_preference_row`` / ``normalize_kto_row``."""
    normalize = _ROW_READERS[kind]
    ref = parse_spec(spec)
    cap = min(x for x in (ref.max_rows, max_rows) if x) if (ref.max_rows or max_rows) else 0
    records, skipped, total, detected = [], [], 0, None
    for path, fmt_spec in resolve_files(ref, kind):
        rows, _ = read_raw_rows(path, text_split=text_split_of(fmt_spec))
        if not rows:
            raise DataError(f"{path}: the file has no rows")
        fs = fmt_spec or detect(rows[0], path, kind)
        detected = detected or fs.format
        for i, row in enumerate(rows, start=1):
            total += 1
            try:
                records += normalize(row, fs)
            except DataError as exc:
                msg = f"{path}: row {i}: {exc}"
                if on_bad_row != "skip":
                    raise DataError(msg) from None
                skipped.append(msg)
    if cap:
        records = records[:cap]
    return LoadedDataset(source=spec, format=detected or "unknown", records=records, total_rows=total, skipped=skipped)


# ----------------------------------------------------------------------------------------------------------------------------
# Rendering through the chat template


@dataclass
class Rendered:
    text: str
    input_ids: list[int]
    labels: list[int]  # -100 on tokens without loss
    segments: list[tuple[str, bool]]  # (text, trained) runs for display
    num_tokens: int
    num_trained: int
    truncated: bool


def with_system(messages: list[dict], system: str) -> list[dict]:
    if system and (not messages or messages[0]["role"] != "system"):
        return [{"role": "system", "content": system}] + list(messages)
    return list(messages)


def render_text(tokenizer, messages: list[dict], add_generation_prompt: bool = False) -> str:
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)


def assistant_char_spans(tokenizer, messages: list[dict], full: str) -> list[tuple[int, int]]:
    """Character ranges of ``full`` produced by assistant turns, end-of-turn tokens included (so the model learns to stop).

    Found by rendering the conversation up to each assistant turn with and without it: templates need no
    ``{% generation %}`` markers (SmolLM2's has none).
    """
    spans, cursor = [], 0
    for k, msg in enumerate(messages):
        if msg["role"] != "assistant":
            continue
        prefix = render_text(tokenizer, messages[:k], add_generation_prompt=True)
        upto = render_text(tokenizer, messages[: k + 1])
        if upto.startswith(prefix) and full.startswith(upto):
            start, end = len(prefix), len(upto)
        else:  # templates that rewrite earlier turns: fall back to locating the content itself
            start = full.find(msg["content"], cursor)
            if start < 0:
                raise DataError("the chat template drops or rewrites this assistant message; cannot locate it to train on")
            end = start + len(msg["content"])
        spans.append((start, end))
        cursor = end
    return spans


def render_example(tokenizer, messages: list[dict], cutoff_len: int = 1024, train_on_prompt: bool = False,
                   system: str = "") -> Rendered:
    """Tokenize one conversation exactly as training sees it, with the loss mask and the cutoff applied."""
    messages = with_system(messages, system)
    if not any(m["role"] == "assistant" for m in messages):
        raise DataError("no assistant message to train on")
    full = render_text(tokenizer, messages)
    spans = assistant_char_spans(tokenizer, messages, full)
    enc = tokenizer(full, add_special_tokens=False, return_offsets_mapping=True)
    ids, offsets = list(enc["input_ids"]), enc["offset_mapping"]
    trained = [train_on_prompt or any(s <= a < e for s, e in spans) for a, _ in offsets]
    truncated = len(ids) > cutoff_len
    ids, trained, offsets = ids[:cutoff_len], trained[:cutoff_len], offsets[:cutoff_len]
    labels = [t if keep else -100 for t, keep in zip(ids, trained)]
    segments = _segments(full, offsets, trained)
    return Rendered(text=full, input_ids=ids, labels=labels, segments=segments, num_tokens=len(ids),
                    num_trained=sum(trained), truncated=truncated)


def _segments(text: str, offsets, trained: list[bool]) -> list[tuple[str, bool]]:
    """Group the rendered text into runs of trained / masked characters (what the Data tab highlights)."""
    segs: list[tuple[str, bool]] = []
    pos = 0
    for (a, b), t in zip(offsets, trained):
        if a > pos and segs:  # characters between tokens (rare) inherit the previous run
            segs[-1] = (segs[-1][0] + text[pos:a], segs[-1][1])
        piece = text[max(a, pos):b]
        if not piece:
            continue
        if segs and segs[-1][1] == t:
            segs[-1] = (segs[-1][0] + piece, t)
        else:
            segs.append((piece, t))
        pos = b
    return segs


# ----------------------------------------------------------------------------------------------------------------------------
# Training data for a RunConfig


@dataclass
class PreparedData:
    train: list[dict]  # {"input_ids": [...], "labels": [...]}
    eval: list[dict]
    report: dict


def prepare_sft_data(data_cfg, tokenizer, cutoff_len: int, seed: int, extra_specs: list[str] = (),
                     distill_specs: tuple[str, ...] = ()) -> PreparedData:
    """Load, mix, render and split every dataset of a run; the report counts rows, truncations and skips.

    With ``distill_specs``, every example carries ``distill`` (1 for rows of those datasets: engine/train/distill.py)."""
    import random

    per_dataset, rows, skipped = [], [], []
    for spec in list(data_cfg.datasets) + list(extra_specs):
        ds = load_dataset_spec(spec, data_cfg.on_bad_row, data_cfg.max_samples)
        per_dataset.append({"dataset": spec, "format": ds.format, "rows_in_file": ds.total_rows, "rows_used": len(ds.records),
                            "skipped": len(ds.skipped)})
        skipped += ds.skipped
        rows += [(spec, i, r) for i, r in enumerate(ds.records, start=1)]
    examples, truncated, emptied = [], 0, 0
    for spec, i, rec in rows:
        try:
            r = render_example(tokenizer, rec["messages"], cutoff_len, data_cfg.train_on_prompt, data_cfg.system)
        except DataError as exc:
            msg = f"{spec}: row {i}: {exc}"
            if data_cfg.on_bad_row != "skip":
                raise DataError(msg) from None
            skipped.append(msg)
            continue
        truncated += r.truncated
        if r.num_trained == 0:  # the cutoff removed every trained token: nothing to learn from this row
            emptied += 1
            continue
        examples.append({"input_ids": r.input_ids, "labels": r.labels})
        if distill_specs:
            examples[-1]["distill"] = int(spec in distill_specs)
    if not examples:
        raise DataError("no trainable rows: every row was skipped or truncated away (check the data and training.cutoff_len)")
    random.Random(seed).shuffle(examples)
    n_eval = eval_count(data_cfg.val_size, len(examples))
    eval_rows, train_rows = examples[:n_eval], examples[n_eval:]
    report = {"datasets": per_dataset, "train_rows": len(train_rows), "eval_rows": len(eval_rows),
              "truncated_rows": truncated, "dropped_fully_truncated": emptied, "skipped_rows": len(skipped),
              "skipped_examples": skipped[:20], "cutoff_len": cutoff_len,
              "train_tokens": sum(len(e["input_ids"]) for e in train_rows),
              "trained_tokens": sum(sum(1 for t in e["labels"] if t != -100) for e in train_rows)}
    return PreparedData(train=train_rows, eval=eval_rows, report=report)


def prepare_pt_data(data_cfg, tokenizer, cutoff_len: int, seed: int, extra_specs: list[str] = ()) -> PreparedData:
    """Continued pre-training (``method.stage: pt``): every document of every dataset tokenized with EOS after it, the
    documents packed end to end into blocks of ``cutoff_len`` tokens (a document may continue in the next block; the
    last block may be shorter), every token trained. The eval split takes whole documents, before packing."""
    import random

    per_dataset, docs, skipped = [], [], []
    for spec in list(data_cfg.datasets) + list(extra_specs):
        ds = load_dataset_spec(spec, data_cfg.on_bad_row, data_cfg.max_samples, kind="text")
        per_dataset.append({"dataset": spec, "format": ds.format, "rows_in_file": ds.total_rows, "rows_used": len(ds.records),
                            "skipped": len(ds.skipped)})
        skipped += ds.skipped
        docs += [r["text"] for r in ds.records]
    if not docs:
        raise DataError("no documents to train on: every row was skipped")
    random.Random(seed).shuffle(docs)
    n_eval = eval_count(data_cfg.val_size, len(docs))
    train_blocks, train_tokens = pack_documents(tokenizer, docs[n_eval:], cutoff_len)
    eval_blocks, _ = pack_documents(tokenizer, docs[:n_eval], cutoff_len)
    report = {"datasets": per_dataset, "train_rows": len(train_blocks), "eval_rows": len(eval_blocks),
              "documents": len(docs), "eval_documents": n_eval, "packed": True, "truncated_rows": 0,
              "dropped_fully_truncated": 0, "skipped_rows": len(skipped), "skipped_examples": skipped[:20],
              "cutoff_len": cutoff_len, "train_tokens": train_tokens, "trained_tokens": train_tokens}
    return PreparedData(train=train_blocks, eval=eval_blocks, report=report)


def pack_documents(tokenizer, docs: list[str], cutoff_len: int) -> tuple[list[dict], int]:
    """``docs`` tokenized (no special tokens added), EOS after each, concatenated and cut into ``cutoff_len`` blocks:
    ({"input_ids", "labels"} per block with labels = input_ids, total tokens)."""
    eos = tokenizer.eos_token_id
    if eos is None:
        raise DataError("the tokenizer has no end-of-sequence token to put between packed documents")
    stream: list[int] = []
    for start in range(0, len(docs), 1024):  # batches: one tokenizer call per thousand documents
        for ids in tokenizer(docs[start:start + 1024], add_special_tokens=False)["input_ids"]:
            stream += list(ids) + [eos]
    blocks = [stream[i:i + cutoff_len] for i in range(0, len(stream), cutoff_len)]
    return [{"input_ids": b, "labels": list(b)} for b in blocks], len(stream)


def eval_count(val_size: float, n: int) -> int:
    if val_size <= 0:
        return 0
    count = int(val_size) if val_size >= 1 else max(1, round(n * val_size))
    if count >= n:
        raise DataError(f"data.val_size={val_size} leaves no training rows out of {n}")
    return count


def save_jsonl(records: list[dict], path: Path) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return path
