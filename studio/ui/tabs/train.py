"""Train tab: a form generated from RunConfig's field metadata, presets, the fit-and-time card (``plan_card``), the exact
command, Start/Stop, progress, log and the job queue.

The form is not written by hand: every ``config.field_specs()`` entry becomes one input (bool -> Checkbox, choices ->
Dropdown, numbers -> Number, lists -> one entry per line), grouped in one accordion per config section, advanced knobs in a
closed "Advanced" accordion; a field whose values depend on this machine (``distributed.devices``: the GPUs found) gets
a dropdown of what was detected, still free to type. ``values_to_config`` is the one place that turns the form back into a RunConfig; bounds are
checked by ``config.validate`` so every bad value is named (key and allowed range) before anything starts.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import gradio as gr
import pandas as pd

from studio import config as C
from studio.engine.jobs import distributed
from studio.engine.jobs import training as jobs_mod
from studio.engine import rundir
from studio.ui.panels import identity_card, plan_card
from studio.ui.common import fmt_time, progress_html
from studio.ui.context import AppContext
from studio.ui.i18n import Texts, state_name, t

LOG_LINES = 30
TICK_S = 1.5
# which finetuning types use which optional section (the others are hidden to keep the form short)
SECTION_FOR_TYPES = {"lora": ("lora", "qlora"), "quantization": ("qlora",), "freeze": ("freeze",)}
# which stages use which optional section
SECTION_FOR_STAGES = {"preference": C.PREFERENCE_STAGES, "rl": C.RL_STAGES}
OPEN_SECTIONS = ("model", "data", "method", "lora", "training")
CODE_OPTIONS = ("model.trust_remote_code",)  # run code on this machine: off on the page without --allow-code
DETECTED_CHOICES = {"distributed.devices": distributed.device_choices}  # key -> what this machine offers, detected
PICKERS = ("data.datasets",)  # list fields shown as a picker of known datasets (free text allowed), not a text box


@dataclass
class TrainRefs:
    texts: Texts
    specs: list[C.FieldSpec]
    fields: dict[str, gr.components.Component]  # config key ("training.learning_rate") -> its input, from field_specs
    sections: dict[str, gr.Accordion]
    preset: gr.Dropdown
    preset_note: gr.Markdown
    start: gr.Button
    stop: gr.Button
    resume: gr.Button
    show_cmd: gr.Button
    command: gr.Code
    message: gr.Markdown
    progress: gr.HTML
    log: gr.Code
    queue: gr.Dataframe
    queued_pick: gr.Dropdown
    cancel: gr.Button
    timer: gr.Timer
    tick_sig: gr.State
    identity: identity_card.IdentityRefs
    plan: plan_card.PlanRefs | None = None

    def inputs(self) -> list[gr.components.Component]:
        """The form inputs in field_specs order (the order ``values_to_config`` expects)."""
        return [self.fields[s.key] for s in self.specs]


# -- form <-> RunConfig ----------------------------------------------------------------------------------------------------


def range_text(spec: C.FieldSpec) -> str:
    low = f"> {_num(spec.gt)}" if spec.gt is not None else (f"≥ {_num(spec.min)}" if spec.min is not None else "")
    high = f"≤ {_num(spec.max)}" if spec.max is not None else ""
    return ", ".join(p for p in (low, high) if p)


def _num(x: float) -> str:
    return f"{int(x):,}" if float(x).is_integer() else f"{x:g}"


def _field_rows(specs: list[C.FieldSpec]) -> list[list[C.FieldSpec]]:
    """Two inputs per row; a list (one entry per line) gets a row of its own."""
    rows: list[list[C.FieldSpec]] = []
    for spec in specs:
        if spec.type is list or not rows or len(rows[-1]) == 2 or rows[-1][0].type is list:
            rows.append([spec])
        else:
            rows[-1].append(spec)
    return rows


def _form_section(specs: list[C.FieldSpec], tx: Texts, fields: dict, locked: dict, pickers: dict) -> None:
    for row in _field_rows(specs):
        with gr.Row(equal_height=True):
            for spec in row:
                fields[spec.key] = field_component(spec, tx, locked.get(spec.key), pickers.get(spec.key))


def field_component(spec: C.FieldSpec, tx: Texts, locked: str | None = None,
                    choices: list | None = None) -> gr.components.Component:
    """The input for one config field; label = the key users type on the CLI, info = the field's help text.
    ``locked``: an i18n key saying why the field is off and cannot be changed here; ``choices``: a list field's picker
    entries ((label, value) pairs; typed values are allowed too)."""
    rng = range_text(spec)
    info = (spec.help + (f" [{rng}]" if rng else ""), (spec.help_zh or spec.help) + (f"［{rng}］" if rng else ""))
    if spec.key in DETECTED_CHOICES:
        found = distributed.device_summary()
        info = (f"{info[0]} Found: {found}.", f"{info[1]}。本机：{found}。")
    common = dict(label=spec.name, info=locked or info, elem_id=f"cfg-{spec.section}-{spec.name}")
    if locked:
        return tx.make(gr.Checkbox, value=False, interactive=False, **common)
    if spec.key in DETECTED_CHOICES:
        return tx.make(gr.Dropdown, choices=DETECTED_CHOICES[spec.key](), value=spec.default, allow_custom_value=True,
                       **common)
    if choices is not None:
        return tx.make(gr.Dropdown, choices=choices, value=list(spec.default), multiselect=True, allow_custom_value=True,
                       **common)
    if spec.type is bool:
        return tx.make(gr.Checkbox, value=spec.default, **common)
    if spec.choices:
        return tx.make(gr.Dropdown, choices=list(spec.choices), value=spec.default, **common)
    if spec.type in (int, float):
        # no minimum/maximum here: gradio would reject an out-of-range value with a message that does not name the field;
        # config.validate names it
        return tx.make(gr.Number, value=spec.default, precision=0 if spec.type is int else None, **common)
    if spec.type is list:
        return tx.make(gr.Textbox, value="\n".join(spec.default), lines=3, max_lines=12, **common)
    return tx.make(gr.Textbox, value=spec.default, **common)


def config_to_values(cfg: C.RunConfig, specs: list[C.FieldSpec]) -> list:
    values = []
    for spec in specs:
        v = getattr(getattr(cfg, spec.section), spec.name)
        values.append(list(v) if spec.key in PICKERS else "\n".join(v) if spec.type is list else v)
    return values


def values_to_config(specs: list[C.FieldSpec], values: list) -> tuple[C.RunConfig, list[str]]:
    """The one form -> RunConfig conversion. Returns the config and every problem (empty list: ready to run)."""
    cfg, errors = C.RunConfig(), []
    for spec, value in zip(specs, values):
        if value is None and spec.type in (int, float):
            errors.append(f"{spec.key}: empty (expected a {spec.type.__name__}{', ' + range_text(spec) if range_text(spec) else ''})")
            continue
        try:
            setattr(getattr(cfg, spec.section), spec.name, C.coerce(spec, value))
        except C.ConfigError as exc:
            errors.append(str(exc))
    # a field that failed to convert kept its (valid) default, so validate() cannot report it twice
    return cfg, errors + C.validate(cfg)


# -- layout ----------------------------------------------------------------------------------------------------------------


def build(ctx: AppContext, lang: gr.State) -> TrainRefs:
    tx = Texts(ctx.lang)
    specs = C.field_specs()
    fields: dict[str, gr.components.Component] = {}
    sections: dict[str, gr.Accordion] = {}
    # options that run code stay off, saying why, unless the owner started the studio with --allow-code
    locked = {} if ctx.access.allow_code else {k: "code.off" for k in CODE_OPTIONS}
    pickers = {"data.datasets": ctx.dataset_choices()}  # the shipped demo sets (and any data found) with row counts
    ident = identity_card.build(ctx, lang)
    with gr.Row(equal_height=False):
        with gr.Column(scale=3):
            with gr.Row():
                preset = tx.make(gr.Dropdown, label="train.preset", info="train.preset_info", choices=_preset_choices(ctx, ctx.lang),
                                 value="", elem_id="train-preset", scale=2)
                preset_note = gr.Markdown("", elem_id="train-preset-note")
            for section in C.sections():
                sec_specs = [s for s in specs if s.section == section]
                with tx.make(gr.Accordion, label=f"section.{section}", open=section in OPEN_SECTIONS,
                             visible=_section_visible(section, C.RunConfig()), elem_id=f"sec-{section}") as acc:
                    sections[section] = acc
                    _form_section([s for s in sec_specs if not s.advanced], tx, fields, locked, pickers)
                    advanced = [s for s in sec_specs if s.advanced]
                    if advanced:
                        with tx.make(gr.Accordion, label="train.advanced", open=False):
                            _form_section(advanced, tx, fields, locked, pickers)
        with gr.Column(scale=2):
            with gr.Row():
                start = tx.make(gr.Button, value="train.start", variant="primary", elem_id="train-start")
                stop = tx.make(gr.Button, value="train.stop", variant="stop", elem_id="train-stop")
                resume = tx.make(gr.Button, value="train.resume", elem_id="train-resume")
                show_cmd = tx.make(gr.Button, value="train.show_cmd", elem_id="train-show-cmd")
            plan = plan_card.build(tx)  # will it fit? how long? (studio train CONFIG --plan)
            message = gr.Markdown("", elem_id="train-message")
            command = tx.make(gr.Code, label="train.command", language="shell", interactive=False, lines=2, wrap_lines=True,
                         elem_id="train-command")
            progress = gr.HTML(progress_html(None, ctx.lang, False), elem_id="train-progress")
            log = tx.make(gr.Code, label="train.log", language=None, interactive=False, lines=14, max_lines=14,
                          wrap_lines=True, elem_id="train-log")
            queue = tx.make(gr.Dataframe, label="train.queue", value=_queue_frame(ctx, ctx.lang), interactive=False,
                            elem_id="train-queue")
            with gr.Row():
                queued_pick = tx.make(gr.Dropdown, label="train.queued_run", choices=[], value=None, scale=2)
                cancel = tx.make(gr.Button, value="train.cancel", scale=1, elem_id="train-cancel")
    refs = TrainRefs(tx, specs, fields, sections, preset, preset_note, start, stop, resume, show_cmd, command, message, progress,
                     log, queue, queued_pick, cancel, gr.Timer(TICK_S), gr.State(None), ident, plan)
    _wire(ctx, refs, lang)
    return refs


def _wire(ctx: AppContext, refs: TrainRefs, lang: gr.State) -> None:
    form = refs.inputs()
    ui = dict(api_visibility="private")
    refs.preset.change(lambda name, lg: _on_preset(ctx, refs.specs, name, lg), [refs.preset, lang],
                       [refs.preset_note, *form], **ui)
    # presets added while the studio runs show up the next time the dropdown is opened; datasets too
    refs.preset.focus(lambda lg: gr.update(choices=_preset_choices(ctx, lg)), lang, refs.preset, **ui)
    picker = refs.fields["data.datasets"]
    picker.focus(lambda lg: gr.update(choices=ctx.dataset_choices(lg)), lang, picker, **ui)
    switches = [refs.fields["method.stage"], refs.fields["method.finetuning_type"]]
    for switch in switches:
        switch.change(_section_visibility, switches, [refs.sections[s] for s in OPTIONAL_SECTIONS], **ui)
    refs.show_cmd.click(lambda lg, name, *v: _on_show_command(ctx, refs.specs, lg, name, v), [lang, refs.preset, *form],
                        [refs.command, refs.message], **ui)
    refs.start.click(lambda lg, *v: _on_start(ctx, refs.specs, lg, v), [lang, *form], [refs.message, refs.command], **ui) \
        .then(lambda lg: _on_tick(ctx, lg, None), [lang], _tick_outputs(refs), **ui)
    refs.stop.click(lambda lg: _on_stop(ctx, lg), [lang], [refs.message], **ui)
    refs.resume.click(lambda lg: _on_resume(ctx, lg), [lang], [refs.message, refs.command], **ui) \
        .then(lambda lg: _on_tick(ctx, lg, None), [lang], _tick_outputs(refs), **ui)
    refs.cancel.click(lambda run, lg: _on_cancel(ctx, run, lg), [refs.queued_pick, lang], [refs.message], **ui)
    refs.timer.tick(lambda lg, sig: _on_tick(ctx, lg, sig), [lang, refs.tick_sig], _tick_outputs(refs), show_progress="hidden",
                    **ui)
    plan_card.wire(ctx, refs.plan, lang, form, lambda values: values_to_config(refs.specs, values))


def _tick_outputs(refs: TrainRefs) -> list:
    return [refs.progress, refs.log, refs.queue, refs.queued_pick, refs.tick_sig]


# -- handlers --------------------------------------------------------------------------------------------------------------


def _preset_choices(ctx: AppContext, lang: str) -> list[tuple[str, str]]:
    return [(t("train.preset_none", lang), "")] + [(name, name) for name in ctx.presets()]


def _on_preset(ctx: AppContext, specs: list[C.FieldSpec], name: str, lang: str) -> list:
    path = ctx.presets().get(name or "")
    try:
        cfg = C.load(path) if path else C.RunConfig()
    except C.ConfigError as exc:
        gr.Warning(str(exc))
        return [gr.skip()] * (1 + len(specs))
    note = ctx.preset_description(path) if path else ""
    return [note, *config_to_values(cfg, specs)]


OPTIONAL_SECTIONS = (*SECTION_FOR_TYPES, *SECTION_FOR_STAGES)


def _section_visible(section: str, cfg: C.RunConfig) -> bool:
    if section in SECTION_FOR_TYPES:
        return cfg.method.finetuning_type in SECTION_FOR_TYPES[section]
    return cfg.method.stage in SECTION_FOR_STAGES.get(section, (cfg.method.stage,))


def _section_visibility(stage: str, ftype: str) -> list:
    """Show only the sections the chosen stage and finetuning type use (the form stays short)."""
    cfg = C.RunConfig()
    cfg.method.stage, cfg.method.finetuning_type = stage, ftype
    return [gr.update(visible=_section_visible(s, cfg)) for s in OPTIONAL_SECTIONS]


def _invalid(errors: list[str], lang: str) -> str:
    gr.Warning(t("train.invalid", lang) + " " + "; ".join(errors[:3]))
    return t("train.invalid", lang) + "\n\n" + "\n".join(f"- `{e}`" for e in errors)


def form_config(specs: list[C.FieldSpec], values: list) -> tuple[C.RunConfig, list[str]]:
    """``values_to_config``, then what this machine cannot start (devices, backends, method). The address checks open
    connections: the queue makes them, after the page's access policy allowed the run (engine/access.py)."""
    cfg, errors = values_to_config(specs, values)
    return cfg, errors or distributed.problems(cfg, network=False)


def _on_show_command(ctx: AppContext, specs, lang: str, preset: str, values) -> tuple[str, str]:
    cfg, errors = form_config(specs, list(values))
    path = ctx.presets().get(preset or "")
    cmd = jobs_mod.studio_command(cfg, path, _shown_path(path) if path else None)
    argv = " ".join(jobs_mod.job_argv(ctx.runs_root / "<run>", cfg))
    return cmd, (_invalid(errors, lang) if errors else t("train.cmd_note", lang, argv=argv))


def _shown_path(path) -> str:
    """A preset path as a user would type it: relative to the current folder when it is inside it."""

    try:
        return str(Path(path).resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _on_start(ctx: AppContext, specs, lang: str, values) -> tuple:
    cfg, errors = form_config(specs, list(values))
    if errors:
        return _invalid(errors, lang), gr.skip()
    try:
        job = ctx.jobs.submit(cfg, access=ctx.access)
    except (C.ConfigError, OSError) as exc:
        gr.Warning(str(exc))
        return t("err.generic", lang, error=str(exc)), gr.skip()
    command = (job.run_dir / rundir.COMMAND).read_text(encoding="utf-8").strip()
    active = ctx.jobs.active()
    if active is not None and active.run_id == job.run_id:
        return t("train.submitted", lang, run=job.run_id), command
    pos = next((i for i, j in enumerate(ctx.jobs.queued(), start=1) if j.run_id == job.run_id), 1)
    return t("train.queued_msg", lang, run=job.run_id, pos=pos), command


def _on_stop(ctx: AppContext, lang: str) -> str:
    job = ctx.jobs.active()
    if job is None:
        return t("train.no_active", lang)
    ctx.jobs.stop(job.run_id)
    return t("train.stop_sent", lang, run=job.run_id)


def _on_resume(ctx: AppContext, lang: str) -> tuple:
    """Continue the run this tab shows (aborted or failed) from its last checkpoint, through the queue."""
    run = _watched_run(ctx)
    if run is None:
        return t("train.no_resume", lang), gr.skip()
    try:
        job = ctx.jobs.resume(run.name, access=ctx.access)
    except (C.ConfigError, OSError) as exc:
        return t("err.generic", lang, error=str(exc)), gr.skip()
    command = (job.run_dir / rundir.COMMAND).read_text(encoding="utf-8").strip()
    return t("train.resumed", lang, run=job.run_id), command


def _on_cancel(ctx: AppContext, run_id: str | None, lang: str) -> str:
    if not run_id:
        return t("train.pick_queued", lang)
    return t("train.cancelled" if ctx.jobs.cancel(run_id) else "train.not_queued", lang, run=run_id)


def _watched_run(ctx: AppContext):
    """The run the Train tab shows: the active one, else the last this studio knows, else the newest on disk."""
    run = ctx.jobs.last_run()
    if run is None:
        runs = rundir.list_runs(ctx.runs_root)
        run = runs[0].path if runs else None
    return run


def _on_tick(ctx: AppContext, lang: str, sig) -> list:
    ctx.jobs.poll()
    run = _watched_run(ctx)
    active = ctx.jobs.active()
    queued = ctx.jobs.queued()
    status = rundir.read_status(run) if run else {}
    log_size = sum((run / f).stat().st_size for f in (rundir.LOG, jobs_mod.CHILD_OUTPUT) if (run / f).exists()) if run else 0
    new_sig = (str(run), status.get("updated_at"), status.get("state"), log_size, tuple(j.run_id for j in queued),
               active.run_id if active else None, lang)
    if new_sig == sig:  # nothing changed: leave the page alone (no flicker, no scroll reset in the log)
        return [gr.skip()] * 5
    is_active = active is not None and run is not None and active.run_dir == run
    log = jobs_mod.log_tail(run, LOG_LINES) if run else ""
    picks = [j.run_id for j in queued]
    return [progress_html(run, lang, is_active), log, _queue_frame(ctx, lang),
            gr.update(choices=picks, value=picks[0] if picks else None), new_sig]


def _queue_frame(ctx: AppContext, lang: str) -> pd.DataFrame:
    cols = [t("mon.col.run", lang), t("mon.col.state", lang), t("mon.col.started", lang)]
    rows = []
    active = ctx.jobs.active()
    if active is not None:
        st = rundir.read_status(active.run_dir)
        state = st.get("state", "running")
        label = t("train.starting", lang) if state == "queued" else state_name(state, lang)
        rows.append([active.run_id, label, fmt_time(st.get("started_at") or st.get("launched_at"))])
    for job in ctx.jobs.queued():
        rows.append([job.run_id, state_name("queued", lang), fmt_time(job.queued_at)])
    return pd.DataFrame(rows, columns=cols)


def relabel(ctx: AppContext, refs: TrainRefs, lang: str) -> dict:
    """Language switch, beyond the static texts: the (defaults) preset entry and the self-cognition card's filter; the
    progress box follows on the next tick."""
    return {refs.preset: {"choices": _preset_choices(ctx, lang)}, **identity_card.relabel(ctx, refs.identity, lang)}
