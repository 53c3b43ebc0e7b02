"""Export tab: merge a run's adapter into its base model, or combine several adapters with weights (linear, TIES, DARE,
...), save a merged model or one combined adapter, optionally GGUF + an Ollama Modelfile, all verified.

The tab builds the same ``studio export ...`` command a user can type (shown, with the exact argv it starts) and runs it
as a background child (``studio.engine.jobs.export``), showing its progress, then the output folder and its size, the
per-prompt logit check, the GGUF round trip, and an "Open in Chat" button. No torch is imported here.

The export's state lives in its job folder ($STUDIO_HOME/exports/.jobs/<id>), not in this process: a reloaded page
re-attaches to the newest running (or just-ended) export, and "Cancel" stops the child from any page. The job a browser
tab follows is kept in its own ``gr.State``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import gradio as gr
import pandas as pd

from studio.engine import rundir
from studio.engine.export.merge import COMBINATIONS, DTYPES, PROMPTS
from studio.engine.export.gguf import QTYPES
from studio.engine.jobs import export as export_job
from studio.engine.jobs.export import ExportJob, ExportRequest, shell_command
from studio.ui.common import fmt_size
from studio.ui.common import progress_bar as bar
from studio.ui.context import AppContext
from studio.ui.i18n import Texts, t

POLL_S = 0.5
CHECK_COLS = ("export.col.check", "export.col.prompt", "export.col.diff", "export.col.top1", "export.col.tol",
              "export.col.result")


@dataclass
class ExportRefs:
    texts: Texts
    run: gr.Dropdown  # runs to export (several = a weighted merge)
    source: gr.Textbox  # adapter / run folders, one per line
    weights: gr.Textbox
    combine: gr.Dropdown
    density: gr.Slider
    output: gr.Radio
    out_dir: gr.Textbox
    dtype: gr.Dropdown
    gguf: gr.CheckboxGroup
    overwrite: gr.Checkbox
    merge: gr.Button  # "Export"
    cancel: gr.Button  # stops the running export (shown while one runs)
    open_chat: gr.Button
    progress: gr.HTML
    message: gr.Markdown
    command: gr.Code
    checks: gr.Dataframe
    gguf_info: gr.Markdown
    result: gr.JSON
    log: gr.Textbox
    target: gr.State  # {"path", "base"} of the last successful export, for "Open in Chat"
    job: gr.State  # the job folder this browser tab follows (for Cancel)


def exportable_runs(ctx: AppContext) -> list[str]:
    """Runs that left an adapter (or trained weights) to export."""
    return [r.run_id for r in rundir.list_runs(ctx.runs_root)
            if (r.path / rundir.ADAPTER).is_dir() or (r.path / rundir.MODEL).is_dir()]


def build(ctx: AppContext, lang: gr.State) -> ExportRefs:
    tx = Texts(ctx.lang)
    with gr.Row():
        run = tx.make(gr.Dropdown, label="export.run", info="export.run_info", choices=exportable_runs(ctx), value=[],
                      multiselect=True, elem_id="export-run", scale=2)
        source = tx.make(gr.Textbox, label="export.adapter", lines=2, elem_id="export-source", scale=3)
    with tx.make(gr.Accordion, label="export.combine_title", open=False):
        with gr.Row():
            weights = tx.make(gr.Textbox, label="export.weights", info="export.weights_info", placeholder="0.7, 0.3",
                              elem_id="export-weights")
            combine = tx.make(gr.Dropdown, label="export.combine", info="export.combine_info", choices=list(COMBINATIONS),
                              value="cat", elem_id="export-combine")
            density = tx.make(gr.Slider, label="export.density", info="export.density_info", minimum=0.05, maximum=1.0,
                              step=0.05, value=0.5)
            output = gr.Radio(_output_choices(ctx.lang), value="model", label=t("export.as", ctx.lang))
    with gr.Row():
        out_dir = tx.make(gr.Textbox, label="export.out", elem_id="export-out", scale=3)
        dtype = tx.make(gr.Dropdown, label="export.dtype", choices=list(DTYPES), value="float32", scale=1)
        gguf = tx.make(gr.CheckboxGroup, label="export.gguf", info="export.gguf_info", choices=list(QTYPES), value=[],
                       elem_id="export-gguf", scale=2)
        overwrite = tx.make(gr.Checkbox, label="export.overwrite", value=False, elem_id="export-overwrite", scale=1)
    with gr.Row():
        merge = tx.make(gr.Button, value="export.merge", variant="primary", elem_id="export-merge")
        cancel = tx.make(gr.Button, value="export.cancel", variant="stop", visible=False, elem_id="export-cancel")
        open_chat = tx.make(gr.Button, value="export.open_chat", visible=False, elem_id="export-open-chat")
    progress = gr.HTML("", elem_id="export-progress")
    message = gr.Markdown("", elem_id="export-message")
    command = tx.make(gr.Code, label="export.command", language="shell", value=None, interactive=False)
    checks = tx.make(gr.Dataframe, label="export.checks", value=None, interactive=False, elem_id="export-checks")
    gguf_info = gr.Markdown("", elem_id="export-gguf-info")
    with tx.make(gr.Accordion, label="export.details", open=False):
        result = tx.make(gr.JSON, label="export.result", value=None)
        log = tx.make(gr.Textbox, label="export.log", lines=8, max_lines=20, interactive=False)
    target, job = gr.State(None), gr.State(None)
    refs = ExportRefs(tx, run, source, weights, combine, density, output, out_dir, dtype, gguf, overwrite, merge, cancel,
                      open_chat, progress, message, command, checks, gguf_info, result, log, target, job)
    _wire(ctx, refs, lang)
    return refs


def _wire(ctx: AppContext, refs: ExportRefs, lang: gr.State) -> None:
    ui = dict(api_visibility="private")
    refs.run.focus(lambda: gr.update(choices=exportable_runs(ctx)), None, refs.run, **ui)
    refs.run.change(lambda ids: _on_runs(ctx, ids), refs.run, [refs.source, refs.out_dir, refs.weights], **ui)
    form = [refs.source, refs.weights, refs.combine, refs.density, refs.output, refs.out_dir, refs.dtype, refs.gguf,
            refs.overwrite]
    gr.on([c.change for c in form], lambda *a: preview_command(ctx, *a), form, refs.command, **ui)

    def start_export(*args):  # a generator function itself: gradio streams only when the handler is one
        yield from on_export(ctx, *args)

    refs.merge.click(start_export, [*form, lang], _outputs(refs), concurrency_limit=1, concurrency_id="export", **ui)
    refs.cancel.click(on_cancel, [refs.job, lang], [refs.message, refs.cancel], concurrency_limit=None, **ui)


def _outputs(refs: ExportRefs) -> list:
    return [refs.progress, refs.message, refs.command, refs.checks, refs.gguf_info, refs.result, refs.log, refs.open_chat,
            refs.target, refs.cancel, refs.job]


def wire_load(demo: gr.Blocks, refs: ExportRefs, lang: gr.State) -> None:
    """A page (re)load shows the newest running or just-ended export again, following it until it ends."""
    demo.load(on_load, lang, _outputs(refs), concurrency_limit=None, api_visibility="private")


def _on_runs(ctx: AppContext, run_ids: list[str] | None) -> list:
    """Picking runs fills the folders, a default output under $STUDIO_HOME/exports and (several runs) equal weights."""
    run_ids = list(run_ids or [])
    if not run_ids:
        return [gr.skip()] * 3
    folders = "\n".join(str(ctx.runs_root / r) for r in run_ids)
    weights = ", ".join(["%g" % round(1 / len(run_ids), 4)] * len(run_ids)) if len(run_ids) > 1 else ""
    return [folders, export_job.default_out_dir(run_ids), weights]


def _output_choices(lang: str) -> list[tuple[str, str]]:
    return [(t("export.as_model", lang), "model"), (t("export.as_adapter", lang), "adapter")]


# -- the form -> one ExportRequest ----------------------------------------------------------------------------------------


def build_request(ctx: AppContext, sources: str, weights: str, combine: str, density: float, output: str, out_dir: str,
                  dtype: str, gguf: list[str] | None, overwrite: bool, lang: str = "en",
                  check_out: bool = True) -> tuple[ExportRequest | None, str]:
    """The request the form describes, or (None, the reason in the page's language)."""
    try:
        return export_job.build_request(sources, weights, combine, density, output, out_dir, dtype, gguf, overwrite,
                                        check_out, access=ctx.access), ""
    except export_job.RequestError as exc:
        return None, t(exc.key, lang, **exc.params)
    except OSError as exc:  # AccessError: a folder the page may not use
        return None, str(exc)


def preview_command(ctx: AppContext, *form) -> str:
    req, _ = build_request(ctx, *form, check_out=False)
    return shell_command(req) if req else ""


# -- running it -----------------------------------------------------------------------------------------------------------


def on_export(ctx: AppContext, sources, weights, combine, density, output, out_dir, dtype, gguf, overwrite, lang):
    """Generator: progress while the ``studio export`` child runs, then the result (``_view``, then the Cancel button
    and the followed job folder)."""
    req, problem = build_request(ctx, sources, weights, combine, density, output, out_dir, dtype, gguf, overwrite, lang)
    hidden = gr.update(visible=False)
    if req is None:
        yield ["", f"**{t('export.refused', lang)}** {problem}", gr.skip(), None, "", None, "", hidden, None, hidden,
               gr.skip()]
        return
    try:
        job = ExportJob.start(req, access=ctx.access)
    except OSError as exc:
        yield ["", t("err.generic", lang, error=exc), shell_command(req), None, "", None, "", hidden, None, hidden,
               gr.skip()]
        return
    yield from follow(job, lang)


def follow(job: ExportJob, lang: str, message: str = ""):
    """Generator: the job's progress (Cancel shown) until it ends, then its result."""
    state = job.poll()
    running = state["state"] == "running"
    yield [progress_bar(state, lang), message, state["command"], None, "", None, state["log"], gr.update(visible=False),
           None, gr.update(visible=running), str(job.folder)]
    while state["state"] == "running":
        time.sleep(POLL_S)
        state = job.poll()
        yield [progress_bar(state, lang), gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip(), state["log"], gr.skip(),
               gr.skip(), gr.skip(), gr.skip()]
    yield [*_view(state, lang), gr.update(visible=False), str(job.folder)]


def on_load(lang: str):
    """Page (re)load: re-attach to the newest running or just-ended export (nothing changes when there is none)."""
    job = ExportJob.latest()
    if job is None:
        yield [gr.skip()] * 11
        return
    yield from follow(job, lang, t("export.reattached", lang))


def on_cancel(job_dir: str | None, lang: str) -> list:
    """Stop the followed export and remove what it created; the following generator then shows it as cancelled."""
    if not job_dir:
        return [t("export.nothing_running", lang), gr.update(visible=False)]
    try:
        done = ExportJob.attach(job_dir).cancel()
    except (OSError, ValueError, KeyError) as exc:
        return [t("err.generic", lang, error=exc), gr.skip()]
    if not done["cancelled"]:
        return [t("export.nothing_running", lang), gr.update(visible=False)]
    return [cancel_text(done["removed"], lang), gr.update(visible=False)]


def cancel_text(removed: list[str], lang: str) -> str:
    return f"**{t('export.cancelled', lang)}** " + (t("export.removed", lang, paths=", ".join(f"`{p}`" for p in removed))
                                                   if removed else t("export.removed_none", lang))


def _view(state: dict, lang: str) -> list:
    """The final outputs: progress, message, command, check table, GGUF lines, raw result, log, Open in Chat, target."""
    res = state.get("result") or {}
    ok = state["state"] == "finished"
    checks = check_table(res, lang) if res else None
    if ok:
        text = t("export.done", lang, out=res.get("out_dir"), size=fmt_size(res.get("size_bytes")),
                 seconds=state["seconds"], diff=f"{res.get('max_abs_diff', 0):.3g}", tol=f"{res.get('tolerance', 0):.3g}")
        target = {"path": res.get("out_dir"), "base": res.get("base") or ""}
    elif state["state"] == "cancelled":
        text, target = cancel_text(state.get("removed") or [], lang), None
    else:
        failed = res and res.get("ok") is False
        text = f"**{t('export.check_failed' if failed else 'export.failed', lang)}** {state.get('error') or ''}"
        target = None
    cmd = f"{state['command']}\n# {t('export.runs_as', lang)}: {' '.join(state['argv'])}"
    return [progress_bar(state, lang), text, cmd, checks, gguf_lines(res, lang), res or None, state["log"],
            gr.update(visible=ok), target]


def progress_bar(state: dict, lang: str) -> str:
    css = {"running": "running", "finished": "finished", "failed": "failed", "cancelled": "failed"}[state["state"]]
    text = f"{state.get('message') or ''} · {state.get('seconds', 0):.0f} s"
    return bar("export", t(f"export.state.{state['state']}", lang), 100 * float(state.get("fraction") or 0), css,
                        text)


def check_table(res: dict, lang: str) -> pd.DataFrame:
    """One row per prompt and check: the saved folder vs its source, then each GGUF file vs the saved folder."""
    rows = []
    checks = [(t("export.check_saved", lang, dtype=res.get("dtype", "")), res)] if "verification" in res else []
    checks += [(f"GGUF {g.get('qtype')}", g) for g in res.get("gguf") or [] if "verification" in g]
    if "qtype" in res and "verification" in res:  # a failed GGUF check's own numbers
        checks = [(f"GGUF {res['qtype']}", res)]
    for name, check in checks:
        v, tol = check["verification"], check.get("tolerance", check["verification"].get("tolerance"))
        for i, row in enumerate(v.get("per_prompt") or []):
            passed = row["max_abs_diff"] <= tol
            rows.append([name, _short(row.get("prompt") or PROMPTS[i]), f"{row['max_abs_diff']:.3g}",
                         f"{row['top1_agreement']:.1%}", f"{tol:.3g}", t("export.pass" if passed else "export.fail", lang)])
        if v.get("merge_max_abs_diff") is not None:
            rows.append([t("export.check_merge", lang), "*", f"{v['merge_max_abs_diff']:.3g}", "", "", ""])
        rows.append([name, t("export.all", lang), f"{check['max_abs_diff']:.3g}", f"{check['top1_agreement']:.1%}",
                     f"{tol:.3g}", t("export.pass" if check.get("ok") else "export.fail", lang)])
    return pd.DataFrame(rows, columns=[t(c, lang) for c in CHECK_COLS])


def gguf_lines(res: dict, lang: str) -> str:
    lines = []
    for g in (res or {}).get("gguf") or []:
        lines.append(t("export.gguf_line", lang, qtype=g["qtype"], path=g["path"], size=fmt_size(g.get("size_bytes")),
                       diff=f"{g.get('max_abs_diff', 0):.3g}", tol=f"{g.get('tolerance', 0):.3g}",
                       top1=f"{g.get('top1_agreement', 0):.1%}",
                       tok=t("export.tok_same" if g.get("tokenizer_match") else "export.tok_diff", lang),
                       result=t("export.pass" if g.get("ok") else "export.fail", lang), modelfile=g.get("modelfile")))
        lines += [f"  - ⚠ {w}" for w in g.get("warnings") or []]
    return "\n".join(f"- {ln}" if not ln.startswith("  ") else ln for ln in lines)


def _short(text: str, n: int = 48) -> str:
    one = " ".join(text.split())
    return one if len(one) <= n else one[: n - 1] + "…"


def relabel(ctx: AppContext, refs: ExportRefs, lang: str) -> dict:
    return {refs.output: {"choices": _output_choices(lang), "label": t("export.as", lang)}}
