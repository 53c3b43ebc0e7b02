"""The one-click self-cognition card on the Train tab: four fields (name and maker, en + zh), Start, progress, then the
probe's verdict (identity per language with its weakest setting, retention kept / base-right on the reported split, KL)
and the answers side by side, the ones that flipped first (a "Show" filter picks flipped, lost, identity or general rows),
and a button that opens the Chat tab on the tuned model.

It is a thin layer over ``studio.engine.selfcog.identity`` (filling, preview, the preset config) and ``studio.engine.selfcog.probe``
(reading probe.json): Start builds the same config as ``studio train presets/self_cognition.yaml --set identity...`` and
submits it to the job queue, so the run folder, the command and the Monitor tab are those of any other run. Which run
the card follows lives in a ``gr.State`` (per browser tab), never in module state.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import gradio as gr
import pandas as pd

from studio.engine.selfcog import identity, probe
from studio.engine import rundir
from studio.ui.common import progress_html
from studio.ui.context import AppContext
from studio.ui.i18n import STRINGS, Texts, t

PREVIEW_ROWS = 12
TICK_S = 2.0
TABLE_COLS = ("kind", "lang", "where", "change", "question", "base", "tuned")
VIEWS = ("all", "flipped", "lost", "identity", "general")


@dataclass
class IdentityRefs:
    texts: Texts
    accordion: gr.Accordion
    name_en: gr.Textbox
    name_zh: gr.Textbox
    author_en: gr.Textbox
    author_zh: gr.Textbox
    preview: gr.Button
    save: gr.Button
    start: gr.Button
    message: gr.Markdown
    rows: gr.Dataframe
    progress: gr.HTML
    summary: gr.Markdown
    view: gr.Radio
    table: gr.Dataframe
    open_chat: gr.Button
    run: gr.State  # the run this card follows (its run folder path), per browser tab
    timer: gr.Timer
    tick_sig: gr.State

    def names(self) -> list[gr.Textbox]:
        """In ``identity.names_from`` order: name_zh, name_en, author_zh, author_en."""
        return [self.name_zh, self.name_en, self.author_zh, self.author_en]


def build(ctx: AppContext, lang: gr.State) -> IdentityRefs:
    tx = Texts(ctx.lang)
    with tx.make(gr.Accordion, label="ident.title", open=True, elem_id="ident-card") as acc:
        tx.make(gr.Markdown, value="ident.intro")
        with gr.Row():
            name_en = tx.make(gr.Textbox, label="ident.name_en", value="Nova", elem_id="ident-name-en")
            name_zh = tx.make(gr.Textbox, label="ident.name_zh", value="小新", elem_id="ident-name-zh")
            author_en = tx.make(gr.Textbox, label="ident.author_en", value="Nova Labs", elem_id="ident-author-en")
            author_zh = tx.make(gr.Textbox, label="ident.author_zh", value="新星实验室", elem_id="ident-author-zh")
        with gr.Row():
            start = tx.make(gr.Button, value="ident.start", variant="primary", elem_id="ident-start")
            preview = tx.make(gr.Button, value="ident.preview", elem_id="ident-preview")
            save = tx.make(gr.Button, value="ident.save", elem_id="ident-save")
            open_chat = tx.make(gr.Button, value="ident.open_chat", visible=False, elem_id="ident-open-chat")
        message = gr.Markdown("", elem_id="ident-message")
        rows = gr.Dataframe(visible=False, interactive=False, wrap=True, max_height=300, elem_id="ident-rows")
        progress = gr.HTML("", elem_id="ident-progress")
        summary = gr.Markdown("", elem_id="ident-summary")
        view = tx.make(gr.Radio, label="ident.view", choices=view_choices(ctx.lang), value="all", visible=False,
                       elem_id="ident-view")
        table = gr.Dataframe(visible=False, interactive=False, wrap=True, max_height=420, elem_id="ident-table")
    refs = IdentityRefs(tx, acc, name_en, name_zh, author_en, author_zh, preview, save, start, message, rows, progress,
                        summary, view, table, open_chat, gr.State(None), gr.Timer(TICK_S), gr.State(None))
    _wire(ctx, refs, lang)
    return refs


def _wire(ctx: AppContext, refs: IdentityRefs, lang: gr.State) -> None:
    ui = dict(api_visibility="private")
    names = refs.names()
    refs.preview.click(lambda lg, *n: on_preview(lg, *n), [lang, *names], [refs.rows, refs.message], **ui)
    refs.save.click(lambda lg, *n: on_save(ctx, lg, *n), [lang, *names], [refs.message], **ui)
    refs.start.click(lambda lg, *n: on_start(ctx, lg, *n), [lang, *names], [refs.message, refs.run], **ui) \
        .then(lambda run, lg, v: on_tick(ctx, run, lg, None, v), [refs.run, lang, refs.view], _tick_outputs(refs), **ui)
    refs.timer.tick(lambda run, lg, sig, v: on_tick(ctx, run, lg, sig, v), [refs.run, lang, refs.tick_sig, refs.view],
                    _tick_outputs(refs), show_progress="hidden", **ui)
    refs.view.change(lambda run, lg, v: on_view(ctx, run, lg, v), [refs.run, lang, refs.view], [refs.table], **ui)


def _tick_outputs(refs: IdentityRefs) -> list:
    return [refs.progress, refs.summary, refs.view, refs.table, refs.open_chat, refs.tick_sig]


# -- handlers --------------------------------------------------------------------------------------------------------------


def on_preview(lang: str, name_zh: str, name_en: str, author_zh: str, author_en: str) -> list:
    try:
        rows = identity.preview(name_zh, name_en, author_zh, author_en)
    except ValueError as exc:
        return [gr.skip(), t("err.generic", lang, error=str(exc))]
    # half from each language, so both fillings are visible at a glance
    shown = [r for r in rows if r["lang"] == "en"][: PREVIEW_ROWS // 2] + [r for r in rows if r["lang"] == "zh"][: PREVIEW_ROWS // 2]
    frame = pd.DataFrame(shown, columns=["lang", "instruction", "output"])
    return [gr.update(value=frame, visible=True), t("ident.rows", lang, n=len(rows), shown=len(shown))]


def on_save(ctx: AppContext, lang: str, name_zh: str, name_en: str, author_zh: str, author_en: str) -> str:
    import tempfile

    from studio.engine.data.uploads import save_upload

    try:
        names = identity.names_from(name_zh, name_en, author_zh, author_en)
        with tempfile.TemporaryDirectory() as tmp:  # written whole, then kept under a name no other file has
            rows = identity.save_identity_dataset(Path(tmp) / "identity.jsonl", **names)
            path = save_upload(rows, ctx.uploads_root, f"identity-{names['name_en']}.jsonl")
    except (ValueError, OSError) as exc:
        return t("err.generic", lang, error=str(exc))
    n = sum(1 for line in path.read_text(encoding="utf-8").splitlines() if line.strip())
    return t("ident.saved", lang, n=n, path=path)


def on_start(ctx: AppContext, lang: str, name_zh: str, name_en: str, author_zh: str, author_en: str) -> list:
    from studio import config as C

    try:
        cfg = identity.self_cognition_config(name_zh, name_en, author_zh, author_en)
        job = ctx.jobs.submit(cfg, access=ctx.access)
    except (ValueError, C.ConfigError, OSError) as exc:
        gr.Warning(str(exc))
        return [t("err.generic", lang, error=str(exc)), gr.skip()]
    active = ctx.jobs.active()
    if active is not None and active.run_id == job.run_id:
        return [t("ident.started", lang, run=job.run_id), str(job.run_dir)]
    pos = next((i for i, j in enumerate(ctx.jobs.queued(), start=1) if j.run_id == job.run_id), 1)
    return [t("ident.queued", lang, run=job.run_id, pos=pos), str(job.run_dir)]


def on_tick(ctx: AppContext, run: str | None, lang: str, sig, view: str = "all") -> list:
    """Progress of the card's run; once probe.json exists, the verdict, the filter, the table and the chat button."""
    if not run:
        return [gr.skip()] * 6
    ctx.jobs.poll()
    run_dir = Path(run)
    status = rundir.effective_status(run_dir)
    has_probe = (run_dir / probe.PROBE_FILE).is_file()
    new_sig = (run, status.get("updated_at"), status.get("state"), status.get("step"), has_probe, lang)
    if new_sig == sig:
        return [gr.skip()] * 6
    active = ctx.jobs.active()
    bar = progress_html(run_dir, lang, active is not None and active.run_dir == run_dir)
    state = status.get("state")
    result = probe.load_probe(run_dir) if has_probe else None
    if result is None:
        step, total = status.get("step") or 0, status.get("max_steps") or 0
        note = t("ident.probing", lang) if state == "running" and total and step >= total else \
            t("ident.no_probe", lang) if state == "finished" else ""
        return [bar, note, gr.update(visible=False), gr.update(visible=False),
                gr.update(visible=state in ("finished", "aborted")), new_sig]
    return [bar, summary_markdown(result, lang), gr.update(visible=True),
            gr.update(value=probe_frame(result, lang, view), visible=True), gr.update(visible=True), new_sig]


def on_view(ctx: AppContext, run: str | None, lang: str, view: str):
    """The "Show" filter: the table again with only those rows (of a run folder the page may read)."""
    try:
        result = probe.load_probe(ctx.access.path(run, "run folder")) if run else None
    except PermissionError:
        return gr.skip()
    if result is None:
        return gr.skip()
    return gr.update(value=probe_frame(result, lang, view), visible=True)


# -- plain helpers (tested directly) ---------------------------------------------------------------------------------------


def view_choices(lang: str) -> list[tuple[str, str]]:
    return [(t(f"ident.view.{v}", lang), v) for v in VIEWS]


def summary_markdown(result: dict, lang: str) -> str:
    """Identity per language (base -> tuned, and the weakest setting), retention on the reported split, KL."""
    pct = lambda v: "–" if v is None else f"{100 * v:.0f}%"  # noqa: E731
    ident, ret, kl = result["identity"], result["retention"], result.get("kl") or {}
    langs = []
    for code, v in ident["per_lang"].items():
        text = f"{code} {pct(v['base'])} → **{pct(v['tuned'])}**"
        if v.get("weakest"):  # probe.json before the four settings has none
            text += t("ident.weakest", lang, setting=t(f"ident.setting.{v['weakest']}", lang), score=pct(v["min"]))
        langs.append(text)
    split = result.get("split") or ret.get("split") or "–"
    return t("ident.summary", lang, author=t("ident.and_author", lang), langs="; ".join(langs), split=split,
             ret=f"**{pct(ret['score'])}**", kept=ret["kept"], known=ret["base_right"],
             kl="–" if kl.get("kl") is None else f"{kl['kl']:.4f}")


def probe_frame(result: dict, lang: str, view: str = "all") -> pd.DataFrame:
    """The answers side by side (``probe.probe_table``: lost general answers, then identity misses, then the rest)."""
    rows = probe.probe_table(result, view if view in VIEWS else "all", not_asked=t("ident.not_asked", lang))
    where = lambda w: t(f"ident.setting.{w}", lang) if f"ident.setting.{w}" in STRINGS else w  # noqa: E731
    return pd.DataFrame([[where(r[c]) if c == "where" else r[c] for c in TABLE_COLS] for r in rows],
                        columns=[t(f"ident.col.{c}", lang) for c in TABLE_COLS])


def chat_target(run: str | None) -> str | None:
    """The folder the Chat tab should load for the card's run (its adapter), or None before there is one."""
    if not run:
        return None
    for sub in (rundir.ADAPTER, rundir.MODEL):
        if (Path(run) / sub).is_dir():
            return str(Path(run) / sub)
    return None


def relabel(ctx: AppContext, refs: IdentityRefs, lang: str) -> dict:
    """Language switch beyond the static texts: the filter's choices."""
    return {refs.view: {"choices": view_choices(lang)}}
