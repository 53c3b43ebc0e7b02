"""Data tab: pick or upload a dataset, see its detected format, page through its rows, and render one row through the
model's chat template with the trained-on part highlighted (exactly what training sees, cutoff included).

Row editing is its own issue; this tab only reads. The dataset engine (studio.engine.data) is imported inside the handlers,
and the tokenizer is loaded (transformers) only when a row is rendered.
"""

from __future__ import annotations

import html
import shutil
from dataclasses import dataclass
from pathlib import Path

import gradio as gr
import pandas as pd

from studio.ui.context import AppContext
from studio.ui.i18n import Texts, t

MAX_CELL = 300  # characters per table cell: a long answer must not make the page unreadable


@dataclass
class DataRefs:
    texts: Texts
    choose: gr.Dropdown
    upload: gr.File
    spec: gr.Textbox
    load: gr.Button
    use: gr.Button
    info: gr.Markdown
    page: gr.Number
    page_size: gr.Dropdown
    prev: gr.Button
    next: gr.Button
    rows: gr.Dataframe
    row: gr.Number
    model: gr.Textbox
    cutoff: gr.Number
    render: gr.Button
    rendered: gr.HTML
    render_info: gr.Markdown


def build(ctx: AppContext, lang: gr.State) -> DataRefs:
    tx = Texts(ctx.lang)
    with gr.Row():
        with gr.Column(scale=3):
            choose = tx.make(gr.Dropdown, label="data.choose", info="data.choose_info", choices=ctx.dataset_files(), value=None,
                             allow_custom_value=True, elem_id="data-choose")
            spec = tx.make(gr.Textbox, label="data.spec", placeholder="data.empty", elem_id="data-spec")
        with gr.Column(scale=2):
            upload = tx.make(gr.File, label="data.upload", file_types=[".json", ".jsonl", ".csv", ".parquet"], height=120)
    with gr.Row():
        load = tx.make(gr.Button, value="data.load", variant="primary", elem_id="data-load")
        use = tx.make(gr.Button, value="data.use", elem_id="data-use")
    info = gr.Markdown("", elem_id="data-info")
    with gr.Row():
        prev = tx.make(gr.Button, value="data.prev", size="sm")
        page = tx.make(gr.Number, label="data.page", value=1, precision=0, minimum=1)
        page_size = tx.make(gr.Dropdown, label="data.page_size", choices=[5, 10, 20, 50], value=10)
        nxt = tx.make(gr.Button, value="data.next", size="sm")
    rows = tx.make(gr.Dataframe, label="data.rows", value=pd.DataFrame({"#": []}), interactive=False, wrap=True, elem_id="data-rows", max_height=420)
    with gr.Row():
        row = tx.make(gr.Number, label="data.row", value=0, precision=0, minimum=0)
        model = tx.make(gr.Textbox, label="data.model", value="default")
        cutoff = gr.Number(label="cutoff_len", value=1024, precision=0, minimum=8)
        render = tx.make(gr.Button, value="data.render", elem_id="data-render")
    render_info = gr.Markdown("")
    rendered = tx.make(gr.HTML, label="data.rendered", value="", elem_id="data-rendered")
    refs = DataRefs(tx, choose, upload, spec, load, use, info, page, page_size, prev, nxt, rows, row, model, cutoff, render,
                    rendered, render_info)
    _wire(ctx, refs, lang)
    return refs


def _wire(ctx: AppContext, refs: DataRefs, lang: gr.State) -> None:
    ui = dict(api_visibility="undocumented")
    refs.choose.change(lambda p: p or gr.skip(), refs.choose, refs.spec, **ui)
    refs.upload.upload(lambda f, lg: _on_upload(ctx, f, lg), [refs.upload, lang], [refs.spec, refs.info, refs.choose], **ui)
    page_outs = [refs.info, refs.rows, refs.page]
    refs.load.click(lambda s, n, lg: _on_page(s, 1, n, lg), [refs.spec, refs.page_size, lang], page_outs, **ui)
    refs.spec.submit(lambda s, n, lg: _on_page(s, 1, n, lg), [refs.spec, refs.page_size, lang], page_outs, **ui)
    refs.prev.click(lambda s, p, n, lg: _on_page(s, (p or 1) - 1, n, lg), [refs.spec, refs.page, refs.page_size, lang], page_outs, **ui)
    refs.next.click(lambda s, p, n, lg: _on_page(s, (p or 1) + 1, n, lg), [refs.spec, refs.page, refs.page_size, lang], page_outs, **ui)
    refs.page.submit(lambda s, p, n, lg: _on_page(s, p, n, lg), [refs.spec, refs.page, refs.page_size, lang], page_outs, **ui)
    refs.page_size.change(lambda s, n, lg: _on_page(s, 1, n, lg) if s else [gr.skip()] * 3, [refs.spec, refs.page_size, lang],
                          page_outs, **ui)
    refs.rows.select(_on_row_select, [refs.page, refs.page_size], refs.row, **ui)
    refs.render.click(lambda s, r, m, c, lg: _on_render(ctx, s, r, m, c, lg), [refs.spec, refs.row, refs.model, refs.cutoff, lang],
                      [refs.rendered, refs.render_info], **ui)


def _on_upload(ctx: AppContext, file_path: str | None, lang: str) -> list:
    if not file_path:
        return [gr.skip()] * 3
    src = Path(file_path)
    ctx.uploads_root.mkdir(parents=True, exist_ok=True)
    dest = ctx.uploads_root / src.name
    shutil.copyfile(src, dest)  # gradio's temp copy is deleted later; training needs a stable path
    return [str(dest), t("data.uploaded", lang, path=dest), gr.update(choices=ctx.dataset_files(), value=str(dest))]


def _first_file(spec: str):
    """The first file behind a spec and its format (declared in dataset_info.json or detected from row 1)."""
    from studio.engine.data import detect_format, parse_spec, read_raw_rows, resolve_files

    path, fmt = resolve_files(parse_spec(spec))[0]
    if fmt is None:
        first, _ = read_raw_rows(path, 0, 1)
        fmt = detect_format(first[0], path) if first else None
    return path, fmt


def _on_page(spec: str, page: int | None, size: int, lang: str) -> list:
    from studio.engine.data import DataError, load_dataset_spec, read_raw_rows

    spec = (spec or "").strip()
    if not spec:
        return [t("data.empty", lang), None, 1]
    try:
        loaded = load_dataset_spec(spec, on_bad_row="skip")
        path, _ = _first_file(spec)
        _, total = read_raw_rows(path, 0, 0)
        last = max(1, -(-total // int(size)))
        page = min(max(1, int(page or 1)), last)
        rows, _ = read_raw_rows(path, (page - 1) * int(size), int(size))
    except (DataError, OSError) as exc:
        gr.Warning(str(exc))
        return [t("err.generic", lang, error=exc), None, 1]
    skipped = t("data.skipped", lang, n=len(loaded.skipped)) if loaded.skipped else ""
    summary = t("data.summary", lang, fmt=loaded.format, n=len(loaded.records), total=loaded.total_rows, skipped=skipped,
                src=spec)
    if loaded.skipped:
        summary += "\n\n" + "\n".join(f"- `{s}`" for s in loaded.skipped[:5])
    frame = pd.DataFrame([{"#": (page - 1) * int(size) + i, **{k: _cell(v) for k, v in r.items()}} for i, r in enumerate(rows)])
    return [summary + f" · {t('data.page', lang)} {page}/{last}", frame, page]


def _cell(value) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= MAX_CELL else text[:MAX_CELL] + "…"


def _on_row_select(page: int | None, size: int, evt: gr.SelectData) -> int:
    if evt is None or evt.index is None:
        return gr.skip()
    return (int(page or 1) - 1) * int(size) + int(evt.index[0])


def _on_render(ctx: AppContext, spec: str, row: int | None, model: str, cutoff: int | None, lang: str) -> list:
    from studio.engine.data import DataError, normalize_row, read_raw_rows, render_example
    from studio.engine.models import ModelLoadError

    try:
        path, fmt = _first_file((spec or "").strip())
        rows, total = read_raw_rows(path, int(row or 0), 1)
        if not rows:
            return ["", t("data.no_row", lang, row=row, n=total)]
        messages = normalize_row(rows[0], fmt)
        rendered = render_example(ctx.tokenizer(model or "default"), messages, cutoff_len=int(cutoff or 1024))
    except (DataError, ModelLoadError, OSError, IndexError) as exc:
        gr.Warning(str(exc))
        return ["", t("err.generic", lang, error=exc)]
    stats = t("data.render_stats", lang, tokens=rendered.num_tokens, trained=rendered.num_trained,
              trunc=t("data.truncated", lang) if rendered.truncated else "")
    return [segments_html(rendered.segments), stats]


def segments_html(segments: list[tuple[str, bool]]) -> str:
    """The rendered conversation with the trained-on text highlighted (special tokens stay visible)."""
    spans = [f"<span class='{'ts-trained' if trained else 'ts-masked'}'>{html.escape(text)}</span>" for text, trained in segments]
    return f"<pre class='ts-rendered'>{''.join(spans)}</pre>"


def relabel(ctx: AppContext, refs: DataRefs, lang: str) -> dict:
    return {}
