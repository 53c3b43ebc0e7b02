"""Evaluate tab: predict a dataset (or a run's held-out split) with the base and/or the tuned model, score it, and show the
before/after table, the rows that changed most, the run's self-cognition probe, and lm-eval benchmarks when installed.

The work runs as a child process, ``python -m studio eval ... --out DIR`` (the command is shown: the same evaluation runs
from a shell), started by ``studio.engine.jobs.evaluation``. A ``gr.Timer`` reads DIR/progress.json and DIR/results.json; the
UI process loads no model here, and a reload re-attaches with "Show results".
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from pathlib import Path

import gradio as gr
import pandas as pd

from studio.engine.jobs import evaluation as eval_jobs
from studio.engine.evaluate import lm_harness
from studio.engine.evaluate.predict import resolve_run_dir
from studio.engine.evaluate.scores import BUILTIN
from studio.engine.selfcog.probe import format_summary, load_probe
from studio.ui.common import fmt_duration, progress_bar, tuned_outputs
from studio.ui.context import AppContext
from studio.ui.i18n import Texts, t
from studio.ui.limits import RANGES

TICK_S = 2.0
LM_TASKS = "studio_qa_en,studio_qa_zh"  # shipped with the studio (assets/lm_eval): local JSON, no hub


class FormIncomplete(ValueError):
    """The form lacks something; the argument is the i18n key of the message."""


@dataclass
class EvalRefs:
    texts: Texts
    run: gr.Dropdown
    model: gr.Textbox
    adapter: gr.Textbox
    source: gr.Radio
    data: gr.Dropdown
    metrics: gr.CheckboxGroup
    custom: gr.Textbox
    compare: gr.Checkbox
    max_new: gr.Slider
    temperature: gr.Slider
    batch: gr.Slider
    out_dir: gr.Textbox
    start: gr.Button
    stop: gr.Button
    load: gr.Button
    command: gr.Code
    progress: gr.HTML
    message: gr.Markdown
    table: gr.Dataframe
    changed: gr.Dataframe
    probe: gr.Markdown
    lm_tasks: gr.Textbox
    lm_limit: gr.Number
    lm_run: gr.Button
    lm_note: gr.Markdown
    lm_table: gr.Dataframe
    timer: gr.Timer
    job: gr.State  # {"out": folder being followed, "sig": last progress seen}: per user


def build(ctx: AppContext, lang: gr.State) -> EvalRefs:
    tx = Texts(ctx.lang)
    with gr.Row():
        run = tx.make(gr.Dropdown, label="eval.run", choices=tuned_outputs(ctx), value=None, elem_id="eval-run", scale=2)
        model = tx.make(gr.Textbox, label="eval.model", value="default", elem_id="eval-model", scale=2)
        adapter = tx.make(gr.Textbox, label="eval.adapter", elem_id="eval-adapter", scale=3)
    with gr.Row():
        source = tx.make(gr.Radio, label="eval.source", choices=_source_choices(ctx.lang), value="data", scale=2)
        data = tx.make(gr.Dropdown, label="eval.data", choices=ctx.dataset_files(), value=None, allow_custom_value=True,
                       elem_id="eval-data", scale=3)
    with gr.Row():
        metrics = tx.make(gr.CheckboxGroup, label="eval.metrics", info="eval.metrics_info", choices=list(BUILTIN),
                          value=["em", "f1", "rougeL", "bleu"], scale=3, elem_id="eval-metrics")
        compare = tx.make(gr.Checkbox, label="eval.compare", value=True, scale=1, elem_id="eval-compare")
    # a custom metric is code: from the page only with --allow-code, and only files of $STUDIO_HOME/metrics/
    allowed = ctx.access.allow_code
    custom = tx.make(gr.Textbox, label="eval.custom", lines=1, elem_id="eval-custom", interactive=allowed,
                     info=(t("code.metrics_dir", "en", dir=ctx.access.metrics_dir),
                           t("code.metrics_dir", "zh", dir=ctx.access.metrics_dir)) if allowed else "code.off")
    with tx.make(gr.Accordion, label="eval.settings", open=False):
        with gr.Row():
            max_new = tx.make(gr.Slider, label="eval.max_new", **RANGES["max_new_tokens"].slider(), value=128)
            temperature = tx.make(gr.Slider, label="eval.temperature", **RANGES["temperature"].slider(), value=0.0)
            batch = tx.make(gr.Slider, label="eval.batch", **RANGES["batch_size"].slider(), value=8)
    out_dir = tx.make(gr.Textbox, label="eval.out", elem_id="eval-out")
    with gr.Row():
        start = tx.make(gr.Button, value="eval.start", variant="primary", elem_id="eval-start")
        stop = tx.make(gr.Button, value="eval.stop", variant="stop", elem_id="eval-stop")
        load = tx.make(gr.Button, value="eval.load", elem_id="eval-load")
    command = tx.make(gr.Code, label="eval.command", language="shell", value="", interactive=False, lines=2, max_lines=4,
                      wrap_lines=True)
    progress = gr.HTML("", elem_id="eval-progress")
    message = gr.Markdown("", elem_id="eval-message")
    table = tx.make(gr.Dataframe, label="eval.table", value=None, interactive=False, elem_id="eval-table")
    changed = tx.make(gr.Dataframe, label="eval.changed", value=None, interactive=False, wrap=True, elem_id="eval-changed",
                      max_height=420)
    with tx.make(gr.Accordion, label="eval.probe", open=True):
        probe = gr.Markdown("", elem_id="eval-probe")
    with tx.make(gr.Accordion, label="eval.lm_title", open=False):
        lm_note = tx.make(gr.Markdown, value="eval.lm_note" if lm_harness.available() else "eval.lm_missing",
                          elem_id="eval-lm-note")
        with gr.Row():
            lm_tasks = tx.make(gr.Textbox, label="eval.lm_tasks", value=LM_TASKS, scale=3, elem_id="eval-lm-tasks")
            lm_limit = tx.make(gr.Number, label="eval.lm_limit", value=0, minimum=0, scale=1)
            lm_run = tx.make(gr.Button, value="eval.lm_run", scale=1, elem_id="eval-lm-run")
        lm_table = gr.Dataframe(value=None, interactive=False, elem_id="eval-lm-table")
    refs = EvalRefs(tx, run, model, adapter, source, data, metrics, custom, compare, max_new, temperature, batch, out_dir,
                    start, stop, load, command, progress, message, table, changed, probe, lm_tasks, lm_limit, lm_run,
                    lm_note, lm_table, gr.Timer(TICK_S), gr.State({}))
    _wire(ctx, refs, lang)
    return refs


def _source_choices(lang: str) -> list[tuple[str, str]]:
    return [(t("eval.source_val", lang), "val"), (t("eval.source_data", lang), "data")]


def _wire(ctx: AppContext, refs: EvalRefs, lang: gr.State) -> None:
    ui = dict(api_visibility="private")
    refs.run.focus(lambda: gr.update(choices=tuned_outputs(ctx)), None, refs.run, **ui)
    refs.data.focus(lambda: gr.update(choices=ctx.dataset_files()), None, refs.data, **ui)
    refs.run.change(lambda f, lg: on_run(ctx, f, lg), [refs.run, lang], [refs.adapter, refs.model, refs.source, refs.out_dir,
                                                                     refs.probe], **ui)
    form = [refs.model, refs.adapter, refs.source, refs.data, refs.metrics, refs.custom, refs.compare, refs.max_new,
            refs.temperature, refs.batch, refs.out_dir, lang]
    shown = [refs.job, refs.command, refs.message, refs.out_dir]
    refs.start.click(lambda *a: on_start(ctx, *a), form, shown, **ui)
    refs.lm_run.click(lambda m, a, c, o, tasks, lim, lg: on_lm_start(ctx, m, a, c, o, tasks, lim, lg),
                      [refs.model, refs.adapter, refs.compare, refs.out_dir, refs.lm_tasks, refs.lm_limit, lang], shown, **ui)
    refs.stop.click(lambda job, lg: on_stop(ctx, job, lg), [refs.job, lang], refs.message, **ui)
    outs = [refs.job, refs.progress, refs.table, refs.changed, refs.lm_table, refs.probe]
    refs.load.click(lambda o, lg: on_tick(ctx, {"out": (o or "").strip()}, lg, force=True), [refs.out_dir, lang], outs,
                    **ui)
    refs.timer.tick(lambda job, lg: on_tick(ctx, job, lg), [refs.job, lang], outs, show_progress="hidden", **ui)


# -- handlers (plain values in, plain values or gr.update out) -----------------------------------------------------------


def on_run(ctx: AppContext, folder: str | None, lang: str) -> list:
    """Picking a run fills the adapter, its base model, its held-out split (when it kept one), the output folder, the probe."""
    if not folder:
        return [gr.skip()] * 5
    try:
        run = resolve_run_dir(str(ctx.access.path(folder, "run")))
    except OSError as exc:  # AccessError: a folder the page may not use
        gr.Warning(str(exc))
        return [gr.skip()] * 5
    base, source = gr.skip(), gr.skip()
    if run is not None:
        from studio import config as C

        try:
            cfg = C.load(run / "config.yaml")
            base, source = cfg.model.name_or_path, ("val" if cfg.data.val_size > 0 else "data")
        except C.ConfigError:
            pass
    return [folder, base, source, "", probe_markdown(run, lang)]  # the folder follows the rows chosen: set at start


def probe_markdown(run: Path | None, lang: str) -> str:
    if run is None:
        return ""
    result = load_probe(run)
    if not result:
        return t("eval.no_probe", lang)
    try:
        return format_summary(result)
    except (KeyError, TypeError):  # an older probe.json layout: show what is there
        return f"```json\n{result.get('identity')}\n```"


def rows_choice(adapter: str, source: str, data: str) -> tuple[str, str]:
    """(split, data) for the form: the run's held-out split when asked and the adapter is a run, else the dataset."""
    adapter, data = (adapter or "").strip(), (data or "").strip()
    if source == "val" and resolve_run_dir(adapter) is not None:
        return "val", ""
    if not data:
        raise FormIncomplete("eval.need_data")
    return "all", data


def form_argv(ctx: AppContext, model, adapter, source, data, metrics, custom, compare, max_new, temperature, batch,
              out_dir) -> list[str]:
    """The ``studio eval`` argv for the form (FormIncomplete with a message key when the form lacks the rows)."""
    adapter = (adapter or "").strip()
    split, data = rows_choice(adapter, source, data)
    customs = [c.strip() for c in (custom or "").splitlines() if c.strip()]
    return eval_jobs.eval_argv(out_dir, model=(model or "default").strip(), adapter=adapter, data=data, split=split,
                               metrics=",".join(metrics or []), custom_metrics=customs,
                               compare=bool(compare and adapter), max_new_tokens=int(max_new), temperature=float(temperature),
                               batch_size=int(batch), access=ctx.access)


def on_start(ctx: AppContext, model, adapter, source, data, metrics, custom, compare, max_new, temperature, batch, out_dir,
             lang) -> list:
    try:
        split, rows = rows_choice(adapter, source, data)
        out = (out_dir or "").strip() or str(eval_jobs.default_out_dir((adapter or "").strip(), rows, split))
        argv = form_argv(ctx, model, adapter, source, data, metrics, custom, compare, max_new, temperature, batch, out)
        eval_jobs.start(argv, out, access=ctx.access)
    except FormIncomplete as exc:
        return [gr.skip(), gr.skip(), t(exc.args[0], lang), gr.skip()]
    except (RuntimeError, OSError) as exc:
        return [gr.skip(), gr.skip(), t("err.generic", lang, error=exc), gr.skip()]
    return [{"out": out}, eval_jobs.shown_command(argv), t("eval.started", lang, out=out), out]


def on_lm_start(ctx: AppContext, model, adapter, compare, out_dir, tasks, limit, lang) -> list:
    if not lm_harness.available():
        return [gr.skip(), gr.skip(), t("eval.lm_missing", lang), gr.skip()]
    if not lm_harness.parse_tasks(tasks or ""):
        return [gr.skip(), gr.skip(), t("eval.lm_need_tasks", lang), gr.skip()]
    adapter = (adapter or "").strip()
    out = (out_dir or "").strip() or str(eval_jobs.default_out_dir(adapter))
    try:
        argv = eval_jobs.eval_argv(out, model=(model or "default").strip(), adapter=adapter,
                                   compare=bool(compare and adapter), lm_eval=",".join(lm_harness.parse_tasks(tasks)),
                                   lm_eval_limit=float(limit) or None, access=ctx.access)
        eval_jobs.start(argv, out, access=ctx.access)
    except (RuntimeError, OSError) as exc:
        return [gr.skip(), gr.skip(), t("err.generic", lang, error=exc), gr.skip()]
    return [{"out": out}, eval_jobs.shown_command(argv), t("eval.started", lang, out=out), out]


def on_stop(ctx: AppContext, job: dict, lang: str) -> str:
    out = (job or {}).get("out")
    try:
        stopped = bool(out) and eval_jobs.stop(out, access=ctx.access)
    except OSError as exc:
        return t("err.generic", lang, error=exc)
    return t("eval.stopped", lang) if stopped else t("eval.not_running", lang)


def on_tick(ctx: AppContext, job: dict, lang: str, force: bool = False) -> list:
    """Follow the output folder: progress while it runs, the tables once results.json is there."""
    out = (job or {}).get("out")
    if not out:
        return [gr.skip()] * 6
    try:
        info = eval_jobs.status(out, access=ctx.access)
        res = eval_jobs.results(out, access=ctx.access)
    except OSError as exc:  # AccessError: a folder the page may not read
        return [gr.skip(), f"<div class='ts-progress'>{html.escape(str(exc))}</div>", *[gr.skip()] * 4]
    sig = (info.get("state"), info.get("done"), info.get("phase"), info.get("updated_at"), lang, bool(res))
    if not force and sig == job.get("sig"):
        return [gr.skip()] * 6
    new_job = dict(job, sig=sig)
    if not info.get("state") and res is None:  # nothing has run into this folder
        return [new_job, f"<div class='ts-progress'>{html.escape(t('eval.no_results', lang, out=out))}</div>",
                gr.skip(), gr.skip(), gr.skip(), gr.skip()]
    tables = result_frames(res) if res else (gr.skip(), gr.skip(), gr.skip())
    probe = gr.skip()
    if res and res.get("probe"):
        try:
            probe = format_summary(res["probe"])
        except (KeyError, TypeError):
            pass
    return [new_job, progress_html(info, out, lang), *tables, probe]


def progress_html(info: dict, out: str, lang: str) -> str:
    state = info.get("state") or "finished"
    done, total = int(info.get("done") or 0), int(info.get("total") or 0)
    pct = 100 if state == "finished" else (100 * done / total if total else 0)
    phase = f"eval.phase.{info.get('phase')}"
    parts = [t(phase, lang) if phase in _PHASES else str(info.get("phase") or "")]
    if total:
        parts.append(t("eval.rows", lang, done=done, total=total))
    if info.get("elapsed") is not None:
        parts.append(t("train.elapsed", lang, t=fmt_duration(info.get("elapsed"))))
    if state == "running" and info.get("eta") is not None:
        parts.append(t("train.eta", lang, t=fmt_duration(info.get("eta"))))
    label = t(f"eval.state.{state}", lang) if state in ("running", "finished", "failed", "stopped") else state
    detail = (info.get("error") or info.get("log_tail") or "") if state in ("failed", "stopped") else ""
    return progress_bar(Path(out).name, label, pct, state, " · ".join(p for p in parts if p), detail)


_PHASES = {f"eval.phase.{p}" for p in ("loading", "generate", "loss", "lm-eval", "done")}


def result_frames(res: dict) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(metrics table, rows that changed most, lm-eval table) as DataFrames for display."""
    sides = [s for s in ("base", "tuned", "delta") if any(s in v for v in res.get("table", {}).values())]
    table = pd.DataFrame([[name] + [_fmt(vals.get(s), s == "delta") for s in sides]
                          for name, vals in res.get("table", {}).items()], columns=["metric", *sides])
    cols = ["row", "prompt", "reference", "base", "tuned", "metric", "base_score", "tuned_score", "delta"]
    changed = pd.DataFrame([[r.get(c) for c in cols] for r in res.get("changed_most") or []], columns=cols)
    lm_rows = res.get("lm_eval") or []
    lm_cols = ["task", "metric", "filter"] + [s for s in ("base", "tuned", "delta", "value", "stderr")
                                             if any(s in r for r in lm_rows)]
    lm = pd.DataFrame([[r.get(c) for c in lm_cols] for r in lm_rows], columns=lm_cols)
    return table, changed, lm


def _fmt(v, signed: bool) -> str:
    if v is None:
        return "–"
    return f"{v:+.4f}" if signed else f"{v:.4f}"


def relabel(ctx: AppContext, refs: EvalRefs, lang: str) -> dict:
    return {refs.source: {"choices": _source_choices(lang)}}
