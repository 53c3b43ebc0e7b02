"""Monitor tab: live charts of one or several runs, the runs history, failures with their log, and config diffs.

Everything is read from the run folders (``metrics.jsonl``, ``status.json``, ``config.yaml``) on a ``gr.Timer``, so a page
reload or a studio restart shows the same thing: nothing lives in the UI process. A tick that finds no file changed sends
nothing to the browser. Below the base charts (loss with eval loss, learning rate, gradient norm, tokens/s, memory),
``EXTRA_SLOTS`` plots take whatever other metrics the runs log, grouped by ``metrics.extra_charts`` (rewards, margins,
accuracies, reward, KL, entropy, value loss, response length, then any other key): a new method's metrics appear without
a change here. The view controls apply to every chart: x axis (step, epoch, trained tokens, wall time), log scale, the
last N points, outlier clipping (``metrics.chart_view``). Each plot's own toolbar saves it as PNG; *Download CSV* gives
one chart's points.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import gradio as gr
import pandas as pd

from studio import config as C
from studio.engine import curves as metrics, rundir
from studio.ui.common import failure_note, fmt_num, fmt_time
from studio.ui.context import AppContext
from studio.ui.i18n import STRINGS, Texts, state_name, t

TICK_S = 2.0
EXTRA_SLOTS = 12  # plots for the metrics beyond the base charts; each tick assigns them a chart (or hides them)
PLOT_BUTTONS = ["fullscreen", "export"]  # "export" saves the chart as PNG
X_CHOICES = (("mon.x.step", "step"), ("mon.x.epoch", "epoch"), ("mon.x.tokens", "tokens"), ("mon.x.time", "time"))


@dataclass
class MonitorRefs:
    texts: Texts
    runs_table: gr.Dataframe
    pick: gr.Dropdown
    refresh: gr.Button
    smoothing: gr.Slider
    live: gr.Checkbox
    x_axis: gr.Dropdown
    log_scale: gr.Checkbox
    last_n: gr.Number
    clip: gr.Checkbox
    csv_chart: gr.Dropdown
    csv_btn: gr.Button
    csv_file: gr.File
    status: gr.Markdown
    charts: dict[str, gr.LinePlot]  # base chart name (metrics.BASE_CHARTS) -> its plot
    extra: list[gr.LinePlot]  # EXTRA_SLOTS plots, filled in order with metrics.extra_charts
    reward_box: gr.Column
    diff_note: gr.Markdown
    diff: gr.Dataframe
    timer: gr.Timer
    sig: gr.State


def _plot(tx: Texts, chart: str) -> gr.LinePlot:
    # no fixed height: it would clip the legend, which says which line is the smoothed one (or which run)
    return tx.make(gr.LinePlot, value=None, x="step", y="value", color="series", buttons=PLOT_BUTTONS,
                   label=f"mon.chart.{chart}", elem_id=f"chart-{chart}", x_title="step", y_title=chart)


def _slot(i: int) -> gr.LinePlot:
    return gr.LinePlot(value=None, x="step", y="value", color="series", label="", elem_id=f"chart-extra-{i}",
                       x_title="step", y_title="value", visible=False, buttons=PLOT_BUTTONS)


def chart_label(chart: str, lang: str) -> str:
    """The chart's translated title where i18n has one (mon.chart.NAME), else its metric name."""
    return t(f"mon.chart.{chart}", lang) if f"mon.chart.{chart}" in STRINGS else chart


def build(ctx: AppContext, lang: gr.State) -> MonitorRefs:
    tx = Texts(ctx.lang)
    charts: dict[str, gr.LinePlot] = {}
    with gr.Row():
        pick = tx.make(gr.Dropdown, label="mon.pick", choices=[], value=[], multiselect=True, scale=4, elem_id="mon-pick")
        smoothing = tx.make(gr.Slider, label="mon.smoothing", minimum=0.0, maximum=0.99, step=0.01, value=0.6, scale=2)
        with gr.Column(scale=1, min_width=120):
            live = tx.make(gr.Checkbox, label="mon.live", value=True)
            refresh = tx.make(gr.Button, value="mon.refresh", size="sm")
    with gr.Row():
        x_axis = tx.make(gr.Dropdown, label="mon.x", choices=[(tx(k), v) for k, v in X_CHOICES], value="step",
                         elem_id="mon-x")
        log_scale = tx.make(gr.Checkbox, label="mon.log", value=False, elem_id="mon-log")
        last_n = tx.make(gr.Number, label="mon.last_n", value=0, precision=0, minimum=0, elem_id="mon-last-n")
        clip = tx.make(gr.Checkbox, label="mon.clip", value=False, elem_id="mon-clip")
    status = gr.Markdown("", elem_id="mon-status")
    with gr.Row():
        for chart in metrics.BASE_CHARTS[:3]:
            charts[chart] = _plot(tx, chart)
    with gr.Row():
        for chart in metrics.BASE_CHARTS[3:]:
            charts[chart] = _plot(tx, chart)
    extra: list[gr.LinePlot] = []
    with gr.Column(visible=False) as reward_box:
        tx.make(gr.Markdown, value="mon.rl_title")
        for row in range(0, EXTRA_SLOTS, 3):
            with gr.Row():
                extra += [_slot(i) for i in range(row, min(row + 3, EXTRA_SLOTS))]
    with gr.Row():
        csv_chart = tx.make(gr.Dropdown, label="mon.csv_chart", choices=list(metrics.BASE_CHARTS), value="loss",
                            allow_custom_value=True, scale=2, elem_id="mon-csv-chart")
        csv_btn = tx.make(gr.Button, value="mon.csv", scale=1, elem_id="mon-csv")
        csv_file = tx.make(gr.File, label="mon.csv_file", interactive=False, scale=2, elem_id="mon-csv-file")
    with tx.make(gr.Accordion, label="mon.runs", open=True):
        runs_table = gr.Dataframe(value=None, interactive=False, elem_id="mon-runs", max_height=320)
    with tx.make(gr.Accordion, label="mon.diff", open=False):
        diff_note = gr.Markdown("")
        diff = gr.Dataframe(value=None, interactive=False, elem_id="mon-diff")
    refs = MonitorRefs(tx, runs_table, pick, refresh, smoothing, live, x_axis, log_scale, last_n, clip, csv_chart, csv_btn,
                       csv_file, status, charts, extra, reward_box, diff_note, diff, gr.Timer(TICK_S), gr.State(None))
    _wire(ctx, refs, lang)
    return refs


def _wire(ctx: AppContext, refs: MonitorRefs, lang: gr.State) -> None:
    ui = dict(api_visibility="private", show_progress="hidden")
    outs = outputs(refs)
    view = [refs.x_axis, refs.log_scale, refs.last_n, refs.clip]
    refs.timer.tick(lambda p, s, live, lg, sig, *v: _on_tick(ctx, p, s, lg, sig, *v) if live else [gr.skip()] * len(outs),
                    [refs.pick, refs.smoothing, refs.live, lang, refs.sig, *view], outs, **ui)
    for trigger in (refs.pick.change, refs.smoothing.release, refs.refresh.click, refs.x_axis.change,
                    refs.log_scale.change, refs.last_n.submit, refs.clip.change):
        trigger(lambda p, s, lg, *v: _on_tick(ctx, p, s, lg, None, *v), [refs.pick, refs.smoothing, lang, *view], outs, **ui)
    refs.runs_table.select(_on_table_select, [refs.pick], [refs.pick], **ui)
    refs.csv_btn.click(lambda p, c, s: _on_csv(ctx, p, c, s), [refs.pick, refs.csv_chart, refs.smoothing], refs.csv_file,
                       **ui)


def outputs(refs: MonitorRefs) -> list:
    return [refs.pick, refs.runs_table, refs.status, refs.reward_box, refs.diff_note, refs.diff, *refs.charts.values(),
            *refs.extra, refs.csv_chart, refs.sig]


def default_pick(ctx: AppContext) -> list[str]:
    """What the Monitor shows on a fresh page: the active run, else the newest one."""
    active = ctx.jobs.active()
    if active is not None:
        return [active.run_id]
    runs = rundir.list_runs(ctx.runs_root)
    return [runs[0].run_id] if runs else []


def on_load(ctx: AppContext, lang: str) -> list:
    """Page (re)load: re-attach to the active run and show the history."""
    return _on_tick(ctx, default_pick(ctx), 0.6, lang, None)


def _signature(runs: list[rundir.RunInfo], paths: list[Path], smoothing: float, lang: str) -> tuple:
    files = []
    for p in paths:
        for name in (rundir.METRICS, rundir.STATUS):
            f = p / name
            files.append((f.stat().st_size, f.stat().st_mtime) if f.exists() else None)
    return tuple((r.run_id, r.state) for r in runs), tuple(files), smoothing, lang


def _on_tick(ctx: AppContext, picked: list[str] | None, smoothing: float, lang: str, sig, x: str = "step",
             log_scale: bool = False, last_n: int | None = 0, clip: bool = False) -> list:
    runs = rundir.list_runs(ctx.runs_root)
    by_id = {r.run_id: r for r in runs}
    # nothing picked: follow the active (else newest) run, so a run started in the Train tab shows up here by itself
    picked = [p for p in (picked or []) if p in by_id] or default_pick(ctx)
    paths = [by_id[p].path for p in picked]
    view = {"x": x if x in metrics.X_AXES else "step", "log_scale": bool(log_scale), "last_n": max(0, int(last_n or 0)),
            "clip": bool(clip)}
    new_sig = _signature(runs, paths, smoothing, lang) + (tuple(picked), tuple(view.values()))
    if new_sig == sig:
        return [gr.skip()] * (8 + len(metrics.BASE_CHARTS) + EXTRA_SLOTS)
    df = metrics.overlay(paths, smoothing)
    extra = metrics.extra_charts(df)[:EXTRA_SLOTS]
    has_rewards = bool(extra)
    plots = [_chart_update(df, c, view, lang) for c in metrics.BASE_CHARTS]
    plots += [_slot_update(df, extra[i], view, lang) if i < len(extra) else gr.update(visible=False)
              for i in range(EXTRA_SLOTS)]
    diff_note, diff = _diff(paths, lang)
    pick = gr.update(choices=[r.run_id for r in runs], value=picked)
    csv = gr.update(choices=metrics.charts_present(df) or list(metrics.BASE_CHARTS))
    return [pick, _runs_frame(runs, lang), _status_md(ctx, [by_id[p] for p in picked], lang), gr.update(visible=has_rewards),
            diff_note, diff, *plots, csv, new_sig]


def _axes(chart: str, view: dict, lang: str) -> dict:
    """x column and titles of a plot for the current view (a log chart says so in its y title)."""
    x_title = t({v: k for k, v in X_CHOICES}[view["x"]], lang)
    return {"x": view["x"], "x_title": x_title, "y_title": f"log10({chart})" if view["log_scale"] else chart}


def _chart_update(df: pd.DataFrame, chart: str, view: dict, lang: str) -> dict:
    """One chart's points; a chart with none is hidden (no grad norm logged, no memory yet), except the loss."""
    frame = metrics.chart_view(df, chart, **view)
    return gr.update(value=frame, visible=chart == "loss" or not frame.empty, **_axes(chart, view, lang))


def _slot_update(df: pd.DataFrame, chart: str, view: dict, lang: str) -> dict:
    frame = metrics.chart_view(df, chart, **view)
    return gr.update(value=frame, visible=True, label=chart_label(chart, lang), **_axes(chart, view, lang))


def _on_csv(ctx: AppContext, picked: list[str] | None, chart: str, smoothing: float) -> str | None:
    """One chart's points (every x axis, every series of the shown runs) as a CSV file to download."""
    import tempfile

    runs = {r.run_id: r for r in rundir.list_runs(ctx.runs_root)}
    paths = [runs[p].path for p in (picked or []) if p in runs] or [runs[p].path for p in default_pick(ctx)]
    df = metrics.overlay(paths, smoothing)
    name = "".join(c if c.isalnum() or c in "-_" else "_" for c in (chart or "loss"))
    return str(metrics.to_csv(df, chart or "loss", Path(tempfile.mkdtemp(prefix="studio-csv-")) / f"{name}.csv"))


def _status_md(ctx: AppContext, infos: list[rundir.RunInfo], lang: str) -> str:
    if not infos:
        return t("mon.no_runs", lang, root=ctx.runs_root) if not rundir.list_runs(ctx.runs_root) else ""
    parts = []
    for info in infos:
        loss = f" · {t('train.loss', lang, v=fmt_num(info.final_loss))}" if info.final_loss is not None else ""
        parts.append(t("mon.run_line", lang, run=info.run_id, state=state_name(info.state, lang), step=info.step,
                       max=info.max_steps or "?", loss=loss))
        if info.state == "failed":
            parts.append(failure_note(info.path, lang))
    return "\n\n".join(parts)


def _runs_frame(runs: list[rundir.RunInfo], lang: str) -> pd.DataFrame:
    cols = [t(f"mon.col.{c}", lang) for c in ("run", "state", "method", "step", "loss", "started")]
    rows = [[r.run_id, state_name(r.state, lang), "/".join(x for x in (r.stage, r.finetuning_type) if x),
             f"{r.step}/{r.max_steps or '?'}", fmt_num(r.final_loss), fmt_time(r.started_at)] for r in runs]
    return pd.DataFrame(rows, columns=cols)


def _diff(paths: list[Path], lang: str) -> tuple[str, pd.DataFrame]:
    """Config keys that differ between the selected runs, one column per run."""
    if len(paths) < 2:
        return t("mon.diff_none", lang), pd.DataFrame()
    cfgs = []
    for p in paths:
        try:
            cfgs.append(C.load(p / rundir.CONFIG))
        except C.ConfigError:
            cfgs.append(C.RunConfig())
    keys = sorted({k for other in cfgs[1:] for k, _, _ in C.diff(cfgs[0], other)})
    if not keys:
        return t("mon.diff_same", lang), pd.DataFrame()
    rows = [[k] + [_get(cfg, k) for cfg in cfgs] for k in keys]
    return "", pd.DataFrame(rows, columns=[t("mon.col.key", lang)] + [p.name for p in paths])


def _get(cfg: C.RunConfig, key: str) -> str:
    section, name = key.split(".", 1)
    value = getattr(getattr(cfg, section), name)
    return ", ".join(value) if isinstance(value, list) else str(value)


def _on_table_select(picked: list[str] | None, evt: gr.SelectData) -> list[str]:
    """Clicking a row of the runs table adds that run to the overlay (or removes it)."""
    row = evt.row_value if evt is not None else None
    if not row:
        return gr.skip()
    run_id = row[0]
    picked = list(picked or [])
    return [p for p in picked if p != run_id] if run_id in picked else picked + [run_id]


def relabel(ctx: AppContext, refs: MonitorRefs, lang: str) -> dict:
    return {}
