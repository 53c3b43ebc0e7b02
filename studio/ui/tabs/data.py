"""Data tab: the data studio in the browser. Open or upload a dataset (a file, or a dataset_info.json folder and entry) and
see its detected format; map unknown columns to roles; page and search its rows; compute stats; render any row through
the model's chat template with the trained tokens highlighted; edit rows (add, save, duplicate, delete, find-and-replace)
in an editable copy with versions and undo, through a form fitted to the row's format (``row_form``) or as raw JSON;
prune old versions (the count is shown before anything is removed); examine it with the data doctor and see the first
training batch (``data_doctor``); build a mix of several datasets.

Each session remembers the version its rows were read at (``seen``, see ``data_versions``): an edit from an older version
than the newest (another tab saved meanwhile) is refused with a message instead of overwriting that tab's edit. Uploads
never replace a file (``studio.engine.data.uploads``).

Every handler is a thin call into ``studio.engine.data.view`` / ``workspace`` / ``mix`` (imported inside the
handlers; no torch: a tokenizer is loaded only to render, validate or count tokens). The mix builder is ``data_mix``.
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass
from pathlib import Path

import gradio as gr
import pandas as pd

from studio.engine.data.formats import SUFFIXES
from studio.ui.context import AppContext
from studio.ui.panels import data_doctor, data_mix
from studio.ui.panels import data_versions as dv
from studio.ui.panels import row_form
from studio.ui.i18n import Texts, t

N_MAP = 10  # column-mapping dropdowns (datasets with more columns map the first ten)
ROLE_CHOICES = ["", "system", "prompt", "query", "response", "history", "messages", "chosen", "rejected", "kto_tag", "text"]
STATS_TOKEN_SAMPLE = 20_000  # rows tokenized for the stats of a large dataset (evenly spaced)


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
    entry: gr.Dropdown = None
    copy: gr.Button = None
    map_box: gr.Accordion = None
    map_columns: gr.State = None
    map_roles: list = None
    apply_map: gr.Button = None
    search: gr.Textbox = None
    stats_btn: gr.Button = None
    stats_md: gr.Markdown = None
    histogram: gr.Dataframe = None
    editor: gr.Code = None
    save_row: gr.Button = None
    add_row: gr.Button = None
    duplicate: gr.Button = None
    delete: gr.Button = None
    find: gr.Textbox = None
    replace: gr.Textbox = None
    column: gr.Textbox = None
    regex: gr.Checkbox = None
    replace_btn: gr.Button = None
    undo: gr.Button = None
    versions: gr.Dataframe = None
    restore_v: gr.Number = None
    restore: gr.Button = None
    edit_msg: gr.Markdown = None
    prune: dv.PruneRefs = None
    seen: gr.State = None  # {"spec", "version"}: the version this session's rows were read at
    mix: data_mix.MixRefs = None
    form: row_form.FormRefs = None
    doctor: data_doctor.DoctorRefs = None


def build(ctx: AppContext, lang: gr.State) -> DataRefs:
    tx = Texts(ctx.lang)
    with gr.Row():
        with gr.Column(scale=3):
            choose = tx.make(gr.Dropdown, label="data.choose", info="data.choose_info", choices=_choices(ctx), value=None,
                             allow_custom_value=True, elem_id="data-choose")
            spec = tx.make(gr.Textbox, label="data.spec", placeholder="data.empty", elem_id="data-spec")
            entry = tx.make(gr.Dropdown, label="data.entry", choices=[], visible=False, elem_id="data-entry")
        with gr.Column(scale=2):
            upload = tx.make(gr.File, label="data.upload", file_types=list(SUFFIXES), height=120)
    with gr.Row():
        load = tx.make(gr.Button, value="data.load", variant="primary", elem_id="data-load")
        use = tx.make(gr.Button, value="data.use", elem_id="data-use")
        copy = tx.make(gr.Button, value="data.copy", elem_id="data-copy")
    info = gr.Markdown("", elem_id="data-info")
    with tx.make(gr.Accordion, label="data.mapping", open=False, visible=False, elem_id="data-mapping") as map_box:
        tx.make(gr.Markdown, value="data.mapping_info")
        map_columns = gr.State([])
        with gr.Row():
            map_roles = [gr.Dropdown(choices=ROLE_CHOICES, value="", label=f"column {k}", visible=False, min_width=140)
                         for k in range(N_MAP)]
        apply_map = tx.make(gr.Button, value="data.apply_mapping", elem_id="data-apply-map")
    with gr.Row():
        prev = tx.make(gr.Button, value="data.prev", size="sm")
        page = tx.make(gr.Number, label="data.page", value=1, precision=0, minimum=1)
        page_size = tx.make(gr.Dropdown, label="data.page_size", choices=[5, 10, 20, 50], value=10)
        nxt = tx.make(gr.Button, value="data.next", size="sm")
        search = tx.make(gr.Textbox, label="data.search", scale=2, elem_id="data-search")
    rows = tx.make(gr.Dataframe, label="data.rows", value=pd.DataFrame({"#": []}), interactive=False, wrap=True,
                   elem_id="data-rows", max_height=420)
    with tx.make(gr.Accordion, label="data.stats", open=False):
        stats_btn = tx.make(gr.Button, value="data.stats_btn", elem_id="data-stats-btn")
        stats_md = gr.Markdown("", elem_id="data-stats")
        histogram = tx.make(gr.Dataframe, label="data.histogram", value=None, interactive=False)
    with gr.Row():
        row = tx.make(gr.Number, label="data.row", value=0, precision=0, minimum=0, elem_id="data-row")
        model = tx.make(gr.Textbox, label="data.model", value="default")
        cutoff = gr.Number(label="cutoff_len", value=1024, precision=0, minimum=8)
        render = tx.make(gr.Button, value="data.render", elem_id="data-render")
    render_info = gr.Markdown("")
    rendered = tx.make(gr.HTML, label="data.rendered", value="", elem_id="data-rendered")
    refs = DataRefs(tx, choose, upload, spec, load, use, info, page, page_size, prev, nxt, rows, row, model, cutoff, render,
                    rendered, render_info, entry, copy, map_box, map_columns, map_roles, apply_map, search, stats_btn,
                    stats_md, histogram)
    _build_editor(tx, refs)
    with tx.make(gr.Accordion, label="doc.title", open=False, elem_id="data-doctor"):
        refs.doctor = data_doctor.build(tx)
    with tx.make(gr.Accordion, label="data.mix", open=False, elem_id="data-mix"):
        refs.mix = data_mix.build(ctx, tx, lang)
    _wire(ctx, refs, lang)
    return refs


def _build_editor(tx: Texts, refs: DataRefs) -> None:
    with tx.make(gr.Accordion, label="data.edit", open=False, elem_id="data-edit"):
        refs.form = row_form.build(tx)  # fields that fit the selected row's format; the JSON below is the raw fallback
        tx.make(gr.Markdown, value="data.raw_json")
        refs.editor = tx.make(gr.Code, label="data.editor", language="json", value="", elem_id="data-editor")
        with gr.Row():
            refs.save_row = tx.make(gr.Button, value="data.save_row", variant="primary", elem_id="data-save-row")
            refs.add_row = tx.make(gr.Button, value="data.add_row", elem_id="data-add-row")
            refs.duplicate = tx.make(gr.Button, value="data.duplicate", elem_id="data-duplicate")
            refs.delete = tx.make(gr.Button, value="data.delete", variant="stop", elem_id="data-delete")
        with gr.Row():
            refs.find = tx.make(gr.Textbox, label="data.find", placeholder="{{NAME}}", elem_id="data-find")
            refs.replace = tx.make(gr.Textbox, label="data.replace", elem_id="data-replace")
            refs.column = tx.make(gr.Textbox, label="data.column")
            refs.regex = tx.make(gr.Checkbox, label="data.regex", value=False)
            refs.replace_btn = tx.make(gr.Button, value="data.replace_btn", elem_id="data-replace-btn")
        refs.edit_msg = gr.Markdown("", elem_id="data-edit-msg")
        with gr.Row():
            refs.undo = tx.make(gr.Button, value="data.undo", elem_id="data-undo")
            refs.restore_v = tx.make(gr.Number, label="data.restore", value=1, precision=0, minimum=1)
            refs.restore = tx.make(gr.Button, value="data.restore_btn")
        refs.versions = tx.make(gr.Dataframe, label="data.versions", value=None, interactive=False, elem_id="data-versions")
        refs.prune = dv.build(tx)


def _wire(ctx: AppContext, refs: DataRefs, lang: gr.State) -> None:
    ui = dict(api_visibility="private")
    seen = refs.seen = gr.State({})
    refs.choose.change(lambda p: p or gr.skip(), refs.choose, refs.spec, **ui)
    refs.choose.focus(lambda: gr.update(choices=_choices(ctx)), None, refs.choose, **ui)  # new copies and mixes show up
    refs.upload.upload(lambda f, lg: _on_upload(ctx, f, lg), [refs.upload, lang], [refs.spec, refs.info, refs.choose], **ui)
    opened = [refs.info, refs.rows, refs.page, refs.entry, refs.map_box, refs.map_columns, *refs.map_roles, refs.versions,
              refs.editor, seen]
    open_in = [refs.spec, refs.page_size, refs.search, lang]
    acc = ctx.access  # what the page may read and run (engine/access.py): every handler below passes it on
    refs.load.click(dv.tracked(acc, _on_open), open_in, opened, **ui)
    refs.spec.submit(dv.tracked(acc, _on_open), open_in, opened, **ui)
    refs.entry.input(dv.tracked(acc, lambda a, s, e, n, q, lg: _on_open(a, _with_entry(s, e), n, q, lg, spec_out=True),
                                _with_entry),
                     [refs.spec, refs.entry, refs.page_size, refs.search, lang], [*opened[:-1], refs.spec, seen], **ui)
    page_in = [refs.spec, refs.page, refs.page_size, lang, refs.search]
    page_outs = [refs.info, refs.rows, refs.page, seen]
    refs.prev.click(dv.tracked(acc, lambda a, s, p, n, lg, q: _on_page(a, s, (p or 1) - 1, n, lg, q)), page_in,
                    page_outs, **ui)
    refs.next.click(dv.tracked(acc, lambda a, s, p, n, lg, q: _on_page(a, s, (p or 1) + 1, n, lg, q)), page_in,
                    page_outs, **ui)
    refs.page.submit(dv.tracked(acc, _on_page), page_in, page_outs, **ui)
    refs.search.submit(dv.tracked(acc, lambda a, s, p, n, lg, q: _on_page(a, s, 1, n, lg, q)), page_in, page_outs, **ui)
    refs.page_size.change(dv.tracked(acc, lambda a, s, p, n, lg, q: _on_page(a, s, 1, n, lg, q) if s else
                                     [gr.skip()] * 3), page_in, page_outs, **ui)
    form_outs = [refs.form.title, refs.form.loaded, *refs.form.components, refs.form.save, refs.form.add]
    def row_selected(spec, page, size, evt: gr.SelectData):  # gradio passes the event by this annotation
        return _on_row_select(acc, spec, page, size, evt)

    refs.rows.select(row_selected, [refs.spec, refs.page, refs.page_size], [refs.row, refs.editor], **ui).then(
        lambda s, r, lg: row_form.fill(acc, s, r, lg), [refs.spec, refs.row, lang], form_outs, **ui)
    refs.render.click(lambda s, r, m, c, lg: _on_render(ctx, s, r, m, c, lg), [refs.spec, refs.row, refs.model, refs.cutoff, lang],
                      [refs.rendered, refs.render_info], **ui)
    refs.stats_btn.click(lambda s, m, c, lg: _on_stats(ctx, s, m, c, lg), [refs.spec, refs.model, refs.cutoff, lang],
                         [refs.stats_md, refs.histogram], **ui)
    refs.apply_map.click(lambda *a: _on_apply_mapping(acc, *a), [refs.spec, refs.map_columns, *refs.map_roles, refs.page_size, lang],
                         [refs.spec, *opened], **ui)
    saved = gr.State(False)  # whether the last edit saved: only then the form is refilled (a refused save keeps the form)
    refill = dict(fn=lambda s, r, lg, ok: row_form.fill(acc, s, r, lg) if ok else [gr.skip()] * len(form_outs),
                  inputs=[refs.spec, refs.row, lang, saved], outputs=form_outs, **ui)
    edited = [refs.spec, refs.edit_msg, refs.info, refs.rows, refs.page, refs.versions, seen, saved]
    common = [refs.spec, refs.row, refs.editor, refs.model, refs.cutoff, refs.page, refs.page_size, lang]
    for button, action in ((refs.save_row, "update"), (refs.add_row, "add"), (refs.duplicate, "duplicate"),
                           (refs.delete, "delete"), (refs.undo, "undo"), (refs.copy, "copy")):
        button.click(lambda *a, _act=action: _saved(_on_edit(ctx, _act, *a[:-1], seen=a[-1])), [*common, seen], edited,
                     **ui).then(**refill)
    refs.replace_btn.click(lambda *a: _saved(_on_replace(ctx, *a[:-1], seen=a[-1])),
                           [*common, refs.find, refs.replace, refs.column, refs.regex, seen], edited, **ui).then(**refill)
    refs.restore.click(lambda *a: _saved(_on_edit(ctx, "restore", *a[:-1], seen=a[-1])), [*common, refs.restore_v, seen],
                       edited, **ui).then(**refill)
    form = refs.form
    form_in = [refs.spec, refs.row, refs.model, refs.cutoff, refs.page, refs.page_size, lang, form.loaded, *form.components]
    for button, action in ((form.save, "update"), (form.add, "add")):
        button.click(lambda *a, _act=action: _on_form_save(ctx, _act, *a[:-1], seen=a[-1]), [*form_in, seen],
                     [*edited[:6], saved, seen, refs.editor], **ui).then(**refill)
    dv.wire(acc, refs.prune, refs.spec, lang, seen, refs.edit_msg, refs.versions)
    data_doctor.wire(ctx, refs.doctor, refs.spec, refs.model, refs.cutoff, lang, edited[:7], [refs.page, refs.page_size, lang, seen],
                     lambda fix, *a: data_doctor.on_fix(ctx, fix, *a, editable=_editable, refresh=_refresh))


def _saved(outputs: list) -> list:
    """An edit handler's outputs + whether it saved (a refused edit answers gr.skip() for the spec)."""
    return [*outputs, isinstance(outputs[0], str)]


def _errors() -> tuple:
    return dv.errors()


def _choices(ctx: AppContext) -> list[tuple[str, str]]:
    return ctx.dataset_choices()  # demo sets, dataset_info.json entries, files, uploads, copies; with row counts


def _on_upload(ctx: AppContext, file_path: str | None, lang: str) -> list:
    """Keep the upload (gradio deletes its temp copy; training needs a stable path) under a name of its own."""
    from studio.engine.data.uploads import save_upload, upload_name

    if not file_path:
        return [gr.skip()] * 3
    src = Path(file_path)  # gradio keeps the uploaded file's own name as the last part of its temp path
    try:
        dest = save_upload(src, ctx.uploads_root, src.name)
    except _errors() as exc:
        gr.Warning(str(exc))
        return [gr.skip(), t("err.generic", lang, error=exc), gr.skip()]
    wanted = "".join(upload_name(src.name))
    msg = t("data.uploaded", lang, path=dest) if dest.name == wanted else \
        t("data.uploaded_renamed", lang, name=wanted, path=dest)
    return [str(dest), msg, gr.update(choices=_choices(ctx), value=str(dest))]


def _with_entry(spec: str, entry: str) -> str:
    base = (spec or "").strip().split("#")[0]
    return f"{base}#{entry}" if entry else base


def _summary(access, view, spec: str, lang: str, matches: int | None = None) -> str:
    cols = ", ".join(f"`{c}`" for c in view.columns[:12])
    text = t("data.detected", lang, fmt=view.format, n=len(view), cols=cols, src=spec)
    ws = dv.workspace(access, spec)
    if ws is not None:
        text += t("data.workspace", lang, v=ws.head.version)
    if matches is not None:
        text += t("data.matches", lang, n=matches)
    if view.format_error:
        text += "\n\n" + t("data.unknown", lang, why=view.format_error)
    return text


def _on_page(access, spec: str, page: int | None, size: int, lang: str, query: str = "") -> list:
    """[summary, the page's rows, page number] (with ``query``: pages over the matching rows)."""
    from studio.engine.data import view as ds

    spec = (spec or "").strip()
    if not spec:
        return [t("data.empty", lang), None, 1]
    try:
        view = ds.open_dataset(spec, access=access)
        out = ds.page(view, int(page or 1), int(size or 10), query=(query or "").strip())
    except _errors() as exc:
        gr.Warning(str(exc))
        return [t("err.generic", lang, error=exc), None, 1]
    summary = _summary(access, view, spec, lang, out["total"] if query else None)
    return [f"{summary} · {t('data.page', lang)} {out['page']}/{out['pages']}", out["frame"], out["page"]]


def _on_open(access, spec: str, size: int, query: str, lang: str, spec_out: bool = False) -> list:
    """Everything the tab shows about a dataset: summary + page 1, entries, the mapping form, versions."""
    from studio.engine.data import view as ds

    info, frame, page = _on_page(access, spec, 1, size, lang, query)
    hidden = [gr.update(visible=False)] * N_MAP
    try:
        view = ds.open_dataset((spec or "").strip(), access=access) if (spec or "").strip() else None
    except _errors():
        view = None
    if view is None:
        return [info, frame, page, gr.update(visible=False), gr.update(visible=False), [], *hidden, None, gr.skip()] + \
            ([spec] if spec_out else [])
    entry = gr.update(choices=view.entries, value=view.entry or None, visible=bool(view.entries))
    columns = view.columns[:N_MAP]
    current = _current_mapping(view) or (ds.suggest_mapping(view.columns) if view.format_error else {})
    roles = [gr.update(label=c, value=current.get(c, ""), visible=True) for c in columns] + \
        [gr.update(visible=False)] * (N_MAP - len(columns))
    map_box = gr.update(visible=True, open=bool(view.format_error))
    template = json.dumps(ds.row_template(view.formats[0] if view.formats else None), ensure_ascii=False, indent=2)
    out = [info, frame, page, entry, map_box, columns, *roles, dv.versions_frame(access, spec), template]
    return out + ([spec] if spec_out else [])


def _current_mapping(view) -> dict:
    """{column: role} of a dataset_info.json entry's columns (what the form shows as already mapped)."""
    fs = view.formats[0] if view.formats else None
    if fs is None or not view.entry:
        return {}
    return {col: role for role, col in fs.columns.items() if col in view.columns and role in ROLE_CHOICES}


def _on_row_select(access, spec: str, page: int | None, size: int, evt: gr.SelectData) -> list:
    """The selected row's number (from its '#' cell) and its JSON in the editor."""
    from studio.engine.data import view as ds

    if evt is None or evt.index is None:
        return [gr.skip(), gr.skip()]
    values = getattr(evt, "row_value", None)
    try:
        index = int(values[0]) if values else (int(page or 1) - 1) * int(size) + int(evt.index[0])
        row = ds.open_dataset(spec.strip(), access=access).row(index)
    except (*_errors(), TypeError):
        return [gr.skip(), gr.skip()]
    return [index, json.dumps(row, ensure_ascii=False, indent=2)]


def _on_render(ctx: AppContext, spec: str, row: int | None, model: str, cutoff: int | None, lang: str) -> list:
    from studio.engine.data import view as ds

    try:
        view = ds.open_dataset((spec or "").strip(), access=ctx.access)
        if not 0 <= int(row or 0) < len(view):
            return ["", t("data.no_row", lang, row=row, n=len(view))]
        out = ds.render_row(view, int(row or 0), ctx.tokenizer(model or "default"), cutoff_len=int(cutoff or 1024))
    except _errors() as exc:
        gr.Warning(str(exc))
        return ["", t("err.generic", lang, error=exc)]
    parts, stats = [], []
    for v in out["views"]:
        line = t("data.render_stats", lang, tokens=v["num_tokens"], trained=v["num_trained"],
                 trunc=t("data.truncated", lang) if v["truncated"] else "")
        if "label" in v:
            line += " · " + t("data.label", lang, v=v["label"])
        title = f"<div class='ts-view-title'><b>{html.escape(v['title'])}</b></div>" if len(out["views"]) > 1 else ""
        parts.append(title + segments_html(v["segments"]))
        stats.append(f"**{v['title']}**: {line}" if len(out["views"]) > 1 else line)
    return ["".join(parts), " · ".join(stats)]


def segments_html(segments: list[tuple[str, bool]]) -> str:
    """The rendered conversation with the trained-on text highlighted (special tokens stay visible)."""
    spans = [f"<span class='{'ts-trained' if trained else 'ts-masked'}'>{html.escape(text)}</span>" for text, trained in segments]
    return f"<pre class='ts-rendered'>{''.join(spans)}</pre>"


def _on_stats(ctx: AppContext, spec: str, model: str, cutoff: int | None, lang: str) -> list:
    from studio.engine.data import view as ds

    try:
        view = ds.open_dataset((spec or "").strip(), access=ctx.access)
        st = ds.stats(view, ctx.tokenizer(model or "default"), int(cutoff or 1024), token_sample=STATS_TOKEN_SAMPLE)
    except _errors() as exc:
        gr.Warning(str(exc))
        return [t("err.generic", lang, error=exc), None]
    tk = st.get("tokens") or {}
    sampled = t("data.sampled", lang, n=tk["sampled"]) if tk.get("sampled") else ""
    md = t("data.stats_md", lang, rows=st["rows"], empty=st["empty_rows"], dup=st["duplicate_rows"], invalid=st["invalid_rows"],
           min=tk.get("min", "–"), mean=tk.get("mean", "–"), p95=tk.get("p95", "–"), max=tk.get("max", "–"),
           trunc=st.get("truncated_rows", 0), cutoff=st["cutoff_len"], sampled=sampled)
    if st["invalid_examples"]:
        md += "\n\n" + "\n".join(f"- `{x}`" for x in st["invalid_examples"])
    hist = pd.DataFrame([{"tokens": f"{b['from']}–{b['to']}", "rows": b["rows"]} for b in st.get("histogram", [])])
    return [md, hist]


def _on_apply_mapping(access, spec: str, columns: list, *rest) -> list:
    *roles, size, lang = rest
    from studio.engine.data.workspace import Workspace

    from studio.engine.data.formats import DataError

    mapping = {c: r for c, r in zip(columns or [], roles) if r}
    try:
        if not mapping:
            raise DataError("give at least one column a role")
        ws = dv.workspace(access, spec)
        if ws is None:
            ws = Workspace.create((spec or "").strip(), mapping=mapping, access=access)
        else:
            ws.set_mapping(mapping)
    except _errors() as exc:
        gr.Warning(str(exc))
        return [gr.skip(), t("err.generic", lang, error=exc)] + [gr.skip()] * (N_MAP + 8)
    gr.Info(t("data.mapped", lang, path=ws.root))
    return [ws.spec, *dv.tracked(access, _on_open)(ws.spec, size, "", lang)]


def _editable(access, spec: str, lang: str, base: int | None = None):
    """The editable copy of ``spec`` (made on the first edit: the original is never written) and a note when it is new."""
    from studio.engine.data.workspace import Workspace

    ws = dv.workspace(access, spec, base)
    if ws is not None:
        return ws, ""
    ws = Workspace.create(spec, access=access)
    return ws, t("data.copied", lang, path=ws.root, src=spec) + "\n\n"


def _on_edit(ctx: AppContext, action: str, spec, row, editor, model, cutoff, page, size, lang, version=None,
             seen: dict | None = None) -> list:
    """One edit on the editable copy (created on the first edit: the original is never written).

    [spec, message, info, rows, page, versions, seen]; ``seen`` is the session's {"spec", "version"} (see ``data_versions.tracked``):
    an edit from an older version than the newest is refused."""
    spec = (spec or "").strip()
    try:
        ws, note = _editable(ctx.access, spec, lang, dv.base_of(spec, seen))
        if action == "copy":
            return [ws.spec, note or t("data.copied", lang, path=ws.root, src=ws.meta["source"]),
                    *_refresh(ctx.access, ws, page, size, lang)]
        tok = ctx.tokenizer(model or "default") if action in ("update", "add") else None
        version = _apply(ws, action, row, editor, tok, int(cutoff or 1024), version)
    except json.JSONDecodeError as exc:
        return [gr.skip(), t("data.bad_json", lang, error=exc)] + [gr.skip()] * 5
    except _errors() as exc:
        return [gr.skip(), dv.edit_error(exc, lang)] + [gr.skip()] * 5
    msg = note + t("data.saved", lang, v=version.version, action=version.action, detail=version.detail)
    return [ws.spec, msg, *_refresh(ctx.access, ws, page, size, lang)]


def _on_form_save(ctx: AppContext, action: str, spec, row, model, cutoff, page, size, lang, loaded, *values,
                  seen: dict | None = None) -> list:
    """Save the form: its row (the selected row with the form's edits, same format) goes through ``_on_edit``.

    [spec, message, info, rows, page, versions, saved, seen, editor text]."""
    try:
        new = row_form.row_from_form(ctx.access, spec, row, loaded, list(values), lang)
    except _errors() as exc:
        gr.Warning(str(exc))
        return [gr.skip(), t("err.generic", lang, error=exc)] + [gr.skip()] * 4 + [False, gr.skip(), gr.skip()]
    text = json.dumps(new, ensure_ascii=False, indent=2)
    out = _on_edit(ctx, action, spec, row, text, model, cutoff, page, size, lang, seen=seen)
    return [*out[:6], isinstance(out[0], str), out[6], text]


def _apply(ws, action: str, row, editor: str, tok, cutoff: int, version):
    index = int(row or 0)
    if action == "update":
        return ws.update_row(index, json.loads(editor or "null"), tokenizer=tok, cutoff_len=cutoff)
    if action == "add":
        return ws.add_row(json.loads(editor or "null"), tokenizer=tok, cutoff_len=cutoff)
    if action == "duplicate":
        return ws.duplicate_row(index)
    if action == "delete":
        return ws.delete_rows([index])
    if action == "undo":
        return ws.undo()
    return ws.restore(int(version or 0))


def _refresh(access, ws, page, size, lang) -> list:
    """[info, rows, page, versions, seen] after a save (the version read before the rows: see ``data_versions.tracked``)."""
    seen = dv.seen_of(access, ws.spec)
    info, frame, number = _on_page(access, ws.spec, page, size, lang)
    return [info, frame, number, dv.versions_frame(access, ws.spec), seen]


def _on_replace(ctx: AppContext, spec, row, editor, model, cutoff, page, size, lang, find, replace, column, regex,
                seen: dict | None = None) -> list:
    spec = (spec or "").strip()
    try:
        ws, note = _editable(ctx.access, spec, lang, dv.base_of(spec, seen))
        out = ws.replace_text(find or "", replace or "", column=(column or "").strip(), regex=bool(regex),
                              tokenizer=ctx.tokenizer(model or "default"), cutoff_len=int(cutoff or 1024))
    except _errors() as exc:
        return [gr.skip(), dv.edit_error(exc, lang)] + [gr.skip()] * 5
    if not out["rows_changed"]:
        return [ws.spec, note + t("data.no_match", lang), *_refresh(ctx.access, ws, page, size, lang)]
    msg = note + t("data.replaced", lang, n=out["replacements"], rows=out["rows_changed"], v=out["version"]["version"])
    return [ws.spec, msg, *_refresh(ctx.access, ws, page, size, lang)]


def relabel(ctx: AppContext, refs: DataRefs, lang: str) -> dict:
    return {}
