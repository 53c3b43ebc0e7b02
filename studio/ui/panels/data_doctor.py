"""The Data tab's doctor: what is wrong with the open dataset, row by row (``studio.engine.data.doctor``), the one-click
fixes, and the first training batch exactly as the trainer will see it (``studio.engine.train.first_batch``).

- **Examine**: duplicates (exact and near, the Jaccard threshold shown), rows shared with an eval dataset, quality flags;
  each flag with its row numbers (the table's ``#``). Token checks run on evenly spaced rows (said in the summary).
- **Fixes** (drop duplicates, drop empty rows) are ordinary edits of the editable copy: made on the first fix like any
  edit, saved as a new version, undone with *Undo*; an edit from an older version than the newest is refused.
- **First batch**: the run this dataset would start (the model, cutoff and batch size here; SFT, or pt for plain text),
  decoded, trained tokens highlighted, each packed row's start marked.
"""

from __future__ import annotations

import html
from dataclasses import dataclass

import gradio as gr
import pandas as pd

from studio import config as C
from studio.ui.i18n import Texts, t
from studio.ui.panels import data_versions as dv

MAX_LISTED = 20  # row numbers shown per flag in the table (the CLI's --json lists them all)
TOKEN_SAMPLE = 2000  # rows tokenized for the cut-answer check


@dataclass
class DoctorRefs:
    eval_spec: gr.Textbox
    threshold: gr.Slider
    min_chars: gr.Number
    run: gr.Button
    summary: gr.Markdown
    flags: gr.Dataframe
    fix_dups: gr.Button
    fix_empty: gr.Button
    batch_size: gr.Number
    batch_btn: gr.Button
    batch_info: gr.Markdown
    batch_html: gr.HTML


def build(tx: Texts) -> DoctorRefs:
    with gr.Row():
        eval_spec = tx.make(gr.Textbox, label="doc.eval", scale=3, elem_id="doc-eval")
        threshold = tx.make(gr.Slider, label="doc.threshold", minimum=0.5, maximum=1.0, step=0.05, value=0.8, scale=2)
        min_chars = tx.make(gr.Number, label="doc.min_chars", value=2, precision=0, minimum=0, scale=1)
        run = tx.make(gr.Button, value="doc.run", variant="primary", scale=1, elem_id="doc-run")
    summary = gr.Markdown("", elem_id="doc-summary")
    flags = gr.Dataframe(value=None, interactive=False, elem_id="doc-flags", wrap=True)
    with gr.Row():
        fix_dups = tx.make(gr.Button, value="doc.fix_dups", elem_id="doc-fix-dups")
        fix_empty = tx.make(gr.Button, value="doc.fix_empty", elem_id="doc-fix-empty")
    tx.make(gr.Markdown, value=("#### " + t("doc.batch", "en"), "#### " + t("doc.batch", "zh")))
    with gr.Row():
        batch_size = tx.make(gr.Number, label="doc.batch_size", value=8, precision=0, minimum=1, maximum=256)
        batch_btn = tx.make(gr.Button, value="doc.batch_btn", elem_id="doc-batch")
    batch_info = gr.Markdown("", elem_id="doc-batch-info")
    batch_html = gr.HTML("", elem_id="doc-batch-html")
    return DoctorRefs(eval_spec, threshold, min_chars, run, summary, flags, fix_dups, fix_empty, batch_size, batch_btn,
                      batch_info, batch_html)


def wire(ctx, refs: DoctorRefs, spec, model, cutoff, lang, edit_outputs: list, edit_inputs: list, fix_handler) -> None:
    """``fix_handler(fix, spec, threshold, min_chars, *edit_inputs)`` is the Data tab's edit path (it owns the refresh)."""
    ui = dict(api_visibility="private")
    refs.run.click(lambda s, e, th, mc, m, c, lg: on_examine(ctx, s, e, th, mc, m, c, lg),
                   [spec, refs.eval_spec, refs.threshold, refs.min_chars, model, cutoff, lang], [refs.summary, refs.flags],
                   **ui)
    for button, fix in ((refs.fix_dups, "duplicates"), (refs.fix_empty, "empty")):
        button.click(lambda *a, _fix=fix: fix_handler(_fix, *a), [spec, refs.threshold, refs.min_chars, *edit_inputs],
                     edit_outputs, **ui)
    refs.batch_btn.click(lambda s, m, c, b, lg: on_batch(ctx, s, m, c, b, lg), [spec, model, cutoff, refs.batch_size, lang],
                         [refs.batch_info, refs.batch_html], **ui)


def on_examine(ctx, spec: str, eval_spec: str, threshold, min_chars, model: str, cutoff, lang: str) -> list:
    from studio.engine.data import doctor
    from studio.engine.data import view as ds

    try:
        view = ds.open_dataset((spec or "").strip(), access=ctx.access)
        held = ds.open_dataset(eval_spec.strip(), access=ctx.access) if (eval_spec or "").strip() else None
        tok = ctx.tokenizer(model) if (model or "").strip() and model.strip() != "none" else None
        report = doctor.examine(view, held, tok, int(cutoff or 1024), float(threshold or 0.8), int(min_chars or 0),
                                TOKEN_SAMPLE)
    except dv.errors() as exc:
        gr.Warning(str(exc))
        return [t("err.generic", lang, error=exc), None]
    return [summary_md(report, lang), flags_frame(report, lang)]


def summary_md(report: dict, lang: str) -> str:
    text = t("doc.summary", lang, rows=report["rows"], secs=report["seconds"], flagged=report["flagged_rows"],
             thr=report["threshold"], perm=report["num_perm"])
    if report.get("token_rows"):
        text += t("doc.sampled", lang, n=report["token_rows"])
    share = report.get("language") or {}
    if share:
        text += f" zh {share.get('zh', 0):.0%} · en {share.get('en', 0):.0%} · mixed {share.get('mixed', 0):.0%}"
    return text


def flags_frame(report: dict, lang: str) -> pd.DataFrame:
    majority = (report.get("language") or {}).get("majority") or "?"
    rows = []
    for flag, found in report["flags"].items():
        if found:
            label = t(f"doc.flag.{flag}", lang, n=report["min_answer_chars"], major=majority)
            shown = ", ".join(map(str, found[:MAX_LISTED])) + (" …" if len(found) > MAX_LISTED else "")
            rows.append([label, len(found), shown])
    return pd.DataFrame(rows, columns=[t("doc.col.flag", lang), t("doc.col.count", lang), t("doc.col.rows", lang)])


def fix_rows(ws, fix: str, threshold, min_chars) -> list[int]:
    """The rows a fix removes, examined on the editable copy as it is now (what the user saw, unless it changed)."""
    from studio.engine.data import doctor

    report = doctor.examine(ws.view(), threshold=float(threshold or 0.8), min_answer_chars=int(min_chars or 0))
    return doctor.rows_to_drop(report, fix)


def on_batch(ctx, spec: str, model: str, cutoff, batch_size, lang: str) -> list:
    from studio.engine.data import view as ds
    from studio.engine.train.first_batch import first_batch

    try:
        view = ds.open_dataset((spec or "").strip(), access=ctx.access)
        cfg = C.apply_overrides(C.RunConfig(), {
            "model.name_or_path": (model or "").strip() or "default", "data.datasets": [(spec or "").strip()],
            "method.stage": "pt" if view.format == "text" else "sft", "training.cutoff_len": int(cutoff or 1024),
            "training.per_device_train_batch_size": int(batch_size or 8)})
        batch = first_batch(C.check(cfg), access=ctx.access)
    except (*dv.errors(), C.ConfigError) as exc:
        gr.Warning(str(exc))
        return [t("err.generic", lang, error=exc), ""]
    mode = ("padding-free" if batch["padding_free"] else "padded") + f", {batch['shape'][0]}×{batch['shape'][1]}"
    info = t("doc.batch_info", lang, rows=len(batch["rows"]), tokens=batch["tokens"], trained=batch["trained"], mode=mode)
    return [info, batch_html(batch)]


def batch_html(batch: dict) -> str:
    """Each row after a boundary mark, trained text highlighted, padding shown dimmed."""
    css = {"trained": "ts-trained", "context": "ts-masked", "pad": "ts-pad"}
    parts = []
    for row in batch["rows"]:
        spans = "".join(f"<span class='{css[kind]}'>{html.escape(text)}</span>" for text, kind in row["segments"])
        parts.append(f"<span class='ts-boundary'>{batch['boundary']}</span>{spans}")
    return f"<pre class='ts-rendered'>{''.join(parts)}</pre>"


def on_fix(ctx, fix: str, spec: str, threshold, min_chars, page, size, lang: str, seen: dict | None, editable,
           refresh) -> list:
    """One fix as an ordinary edit: the Data tab's ``editable`` (the copy, made on the first edit; stale sessions
    refused) and ``refresh`` (what the tab shows after a save). [spec, message, info, rows, page, versions, seen]."""
    from studio.engine.data import view as ds

    spec = (spec or "").strip()
    try:
        if not fix_rows(_Viewed(ds.open_dataset(spec, access=ctx.access)), fix, threshold, min_chars):
            return [gr.skip(), t("doc.nothing", lang)] + [gr.skip()] * 5
        ws, note = editable(ctx.access, spec, lang, dv.base_of(spec, seen))
        rows = fix_rows(ws, fix, threshold, min_chars)
        version = ws.delete_rows(rows)
    except dv.errors() as exc:
        return [gr.skip(), dv.edit_error(exc, lang)] + [gr.skip()] * 5
    return [ws.spec, note + t("doc.fixed", lang, n=len(rows), v=version.version), *refresh(ctx.access, ws, page, size, lang)]


class _Viewed:
    """A dataset view in the shape ``fix_rows`` reads (``.view()``), before any copy exists."""

    def __init__(self, view):
        self._view = view

    def view(self):
        return self._view
