"""The Data tab's mix builder: a table of datasets with caps or ratios -> a preview of the mixed rows -> saved as a new
dataset (an editable copy under ``$STUDIO_HOME/datasets``). Thin over ``studio.engine.data.mix``."""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr
import pandas as pd

from studio.ui.context import AppContext
from studio.ui.i18n import Texts, t

COLUMNS = ["dataset", "cap", "ratio"]


@dataclass
class MixRefs:
    table: gr.Dataframe
    total: gr.Number
    seed: gr.Number
    name: gr.Textbox
    preview: gr.Button
    save: gr.Button
    message: gr.Markdown
    rows: gr.Dataframe


def build(ctx: AppContext, tx: Texts, lang: gr.State) -> MixRefs:
    empty = pd.DataFrame([["", 0, 0.0]] * 3, columns=COLUMNS)
    table = tx.make(gr.Dataframe, label="data.mix_table", value=empty, headers=COLUMNS, interactive=True,
                    datatype=["str", "number", "number"], elem_id="data-mix-table")
    with gr.Row():
        total = tx.make(gr.Number, label="data.mix_total", value=0, precision=0, minimum=0)
        seed = tx.make(gr.Number, label="data.mix_seed", value=0, precision=0)
        name = tx.make(gr.Textbox, label="data.mix_name", value="mix")
        preview = tx.make(gr.Button, value="data.mix_preview", elem_id="data-mix-preview")
        save = tx.make(gr.Button, value="data.mix_save", variant="primary", elem_id="data-mix-save")
    message = gr.Markdown("", elem_id="data-mix-msg")
    rows = gr.Dataframe(value=None, interactive=False, wrap=True, max_height=360)
    refs = MixRefs(table, total, seed, name, preview, save, message, rows)
    ui = dict(api_visibility="private")
    inputs = [table, total, seed, lang]
    preview.click(lambda *a: on_preview(ctx.access, *a), inputs, [message, rows], **ui)
    save.click(lambda *a: on_save(ctx.access, *a), [*inputs, name], [message, rows], **ui)
    return refs


def parts_from_table(frame) -> list:
    from studio.engine.data.mix import MixPart

    records = frame.to_dict(orient="records") if isinstance(frame, pd.DataFrame) else \
        [dict(zip(COLUMNS, r)) for r in (frame or {}).get("data", [])] if isinstance(frame, dict) else []
    parts = []
    for r in records:
        spec = str(r.get("dataset") or "").strip()
        if spec:
            parts.append(MixPart(spec, cap=int(float(r.get("cap") or 0)), ratio=float(r.get("ratio") or 0)))
    return parts


def _plan(access, frame, total, seed):
    from studio.engine.data.mix import plan_mix

    return plan_mix(parts_from_table(frame), total=int(total or 0), seed=int(seed or 0), access=access)


def _plan_text(plan: dict, lang: str) -> str:
    parts = "; ".join(f"`{p['spec']}` {p['taken']}/{p['rows']}" + (f" (-{p['short_by']})" if p["short_by"] else "")
                      for p in plan["parts"])
    return t("data.mix_plan", lang, total=plan["total"], kind=plan["kind"], parts=parts)


def on_preview(access, frame, total, seed, lang: str) -> list:
    from studio.engine.data.mix import preview_mix
    from studio.engine.data.formats import DataError

    try:
        plan = _plan(access, frame, total, seed)
        return [_plan_text(plan, lang), preview_mix(plan, rows=20)]
    except (DataError, OSError, ValueError) as exc:
        gr.Warning(str(exc))
        return [t("err.generic", lang, error=exc), None]


def on_save(access, frame, total, seed, lang: str, name: str) -> list:
    from studio.engine.data.mix import preview_mix, save_mix
    from studio.engine.data.formats import DataError

    try:
        plan = _plan(access, frame, total, seed)
        ws = save_mix(plan, (name or "mix").strip())
    except (DataError, OSError, ValueError) as exc:
        gr.Warning(str(exc))
        return [t("err.generic", lang, error=exc), None]
    return [_plan_text(plan, lang) + "\n\n" + t("data.mix_saved", lang, path=ws.spec, n=plan["total"]), preview_mix(plan, 20)]
