"""The Train tab's "Will it fit? How long?" card: the form as it is, estimated by ``studio train CONFIG --plan``.

One button runs the plan in a child process (``studio.engine.jobs.plan``: the same command a user types), then the
card shows: fits or not against this machine's available RAM (and the GPU where there is one), the ETA from the
3-step micro-run, parameters, the data after the chat template, the memory breakdown and what to change (each change
with its own peak estimate). The card reads nothing but the plan's JSON.
"""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr
import pandas as pd

from studio import config as C
from studio.ui.common import fmt_duration, fmt_size
from studio.ui.i18n import Texts, t

PART_ORDER = ("runtime", "weights", "adapters", "gradients", "optimizer", "activations", "reference_model")


@dataclass
class PlanRefs:
    button: gr.Button
    summary: gr.Markdown
    breakdown: gr.Dataframe
    changes: gr.Dataframe


def build(tx: Texts) -> PlanRefs:
    with tx.make(gr.Accordion, label="plan.title", open=False, elem_id="train-plan"):
        button = tx.make(gr.Button, value="plan.button", elem_id="train-plan-btn")
        summary = gr.Markdown("", elem_id="train-plan-summary")
        with gr.Row():
            breakdown = tx.make(gr.Dataframe, label="plan.breakdown", value=None, interactive=False,
                                elem_id="train-plan-breakdown")
            changes = tx.make(gr.Dataframe, label="plan.changes", value=None, interactive=False,
                              elem_id="train-plan-changes")
    return PlanRefs(button, summary, breakdown, changes)


def wire(ctx, refs: PlanRefs, lang: gr.State, form: list, to_config) -> None:
    """``to_config(values) -> (RunConfig, errors)``: the Train form's one conversion."""
    refs.button.click(lambda lg, *v: on_estimate(ctx, lg, list(v), to_config), [lang, *form],
                      [refs.summary, refs.breakdown, refs.changes], api_visibility="private")


def on_estimate(ctx, lang: str, values: list, to_config):
    """A generator: a waiting note at once, then the card (or the reason it could not be made)."""
    from studio.engine.access import AccessError
    from studio.engine.jobs.plan import PlanError, run_plan

    cfg, errors = to_config(values)
    if errors:
        yield [t("train.invalid", lang) + "\n\n" + "\n".join(f"- `{e}`" for e in errors), None, None]
        return
    yield [t("plan.running", lang), None, None]
    try:
        plan = run_plan(cfg, access=ctx.access)
    except (C.ConfigError, AccessError, PlanError, OSError) as exc:
        yield [t("plan.failed", lang, error=exc), None, None]
        return
    yield render(plan, lang)


def render(plan: dict, lang: str) -> list:
    """[summary markdown, breakdown frame, changes frame] of a plan's JSON."""
    avail = plan["memory"]["available"]
    where = avail.get("where", "RAM") + (f", GPU {avail['gpu_name']} {fmt_size(avail['gpu_total_bytes'])}"
                                         if avail.get("gpu_name") else "")
    key = "plan.fits" if plan["fits"] else "plan.no_fit"
    lines = [t(key, lang, peak=fmt_size(plan["peak_memory_bytes"]), avail=fmt_size(avail["limit_bytes"]), where=where)]
    if plan.get("gpu_peak_bytes") is not None:
        lines.append(t("plan.gpu", lang, peak=fmt_size(plan["gpu_peak_bytes"]), free=fmt_size(avail.get("gpu_free_bytes")),
                       name=avail.get("gpu_name", "GPU")))
    run = plan.get("micro_run") or {}
    if plan.get("eta_seconds") is not None:
        tps = run.get("tokens_per_s") or (f"{1 / run['step_seconds']:.2f} steps/s" if run.get("step_seconds") else "?")
        lines.append(t("plan.eta", lang, eta=fmt_duration(plan["eta_seconds"]), steps=plan["steps"], tps=tps))
    else:
        why = run.get("error") or ("does not fit" if not plan["fits"] else "--no-micro-run")
        lines.append(t("plan.eta_none", lang, why=why))
    p = plan["parameters"]
    lines.append(t("plan.params", lang, train=f"{p['trainable']:,}", total=f"{p['total']:,}"))
    d = plan["data"]
    lines.append(t("plan.data", lang, rows=_n(d.get("rows")), tokens=_n(d.get("train_tokens")),
                   trained=_n(d.get("trained_tokens")), trunc=_n(d.get("truncated_rows"))))
    parts = plan["memory"]["parts"]
    breakdown = pd.DataFrame([[name, fmt_size(parts[name])] for name in PART_ORDER if name in parts],
                             columns=[t("plan.col.part", lang), t("plan.col.bytes", lang)])
    changes = pd.DataFrame([[c["change"], fmt_size(c["peak_memory_bytes"]), "✓" if c["fits"] else "✗"]
                            for c in plan.get("changes", [])],
                           columns=[t("plan.col.change", lang), t("plan.col.peak", lang), t("plan.col.fits", lang)])
    return ["\n\n".join(lines), breakdown, changes]


def _n(value) -> str:
    return "?" if value is None else f"{value:,}"
