"""Export tab: pick a run (or any adapter folder), merge the adapter into its base model and save a plain Hugging Face
folder. The work and its verification are ``studio.engine.export.merge_adapter``'s (imported when the button is pressed);
this tab only collects the choices and shows the result.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import gradio as gr

from studio.engine import rundir
from studio.ui.common import fmt_size
from studio.ui.context import AppContext
from studio.ui.i18n import Texts, t

DTYPES = ("float32", "bfloat16", "float16")  # the same list as studio.engine.export.DTYPES (kept here: no import at start)
MERGED = "merged"


@dataclass
class ExportRefs:
    texts: Texts
    run: gr.Dropdown
    source: gr.Textbox
    out_dir: gr.Textbox
    dtype: gr.Dropdown
    overwrite: gr.Checkbox
    merge: gr.Button
    message: gr.Markdown
    result: gr.JSON


def exportable_runs(ctx: AppContext) -> list[str]:
    """Runs that left an adapter (or trained weights) to export."""
    return [r.run_id for r in rundir.list_runs(ctx.runs_root)
            if (r.path / rundir.ADAPTER).is_dir() or (r.path / rundir.MODEL).is_dir()]


def build(ctx: AppContext, lang: gr.State) -> ExportRefs:
    tx = Texts(ctx.lang)
    with gr.Row():
        run = tx.make(gr.Dropdown, label="export.run", choices=exportable_runs(ctx), value=None, elem_id="export-run", scale=2)
        source = tx.make(gr.Textbox, label="export.adapter", elem_id="export-source", scale=3)
    with gr.Row():
        out_dir = tx.make(gr.Textbox, label="export.out", elem_id="export-out", scale=3)
        dtype = tx.make(gr.Dropdown, label="export.dtype", choices=list(DTYPES), value="float32", scale=1)
        overwrite = tx.make(gr.Checkbox, label="export.overwrite", value=False, scale=1)
    merge = tx.make(gr.Button, value="export.merge", variant="primary", elem_id="export-merge")
    message = gr.Markdown("", elem_id="export-message")
    result = tx.make(gr.JSON, label="export.result", value=None)
    refs = ExportRefs(tx, run, source, out_dir, dtype, overwrite, merge, message, result)
    ui = dict(api_visibility="undocumented")
    run.focus(lambda: gr.update(choices=exportable_runs(ctx)), None, run, **ui)
    run.change(lambda r: _on_run(ctx, r), run, [source, out_dir], **ui)
    merge.click(lambda s, o, d, w, lg: on_merge(s, o, d, w, lg), [source, out_dir, dtype, overwrite, lang], [message, result],
                concurrency_limit=1, **ui)
    return refs


def _on_run(ctx: AppContext, run_id: str | None) -> list:
    if not run_id:
        return [gr.skip(), gr.skip()]
    run = ctx.runs_root / run_id
    return [str(run), str(run / MERGED)]


def merge(source: str, out_dir: str = "", dtype: str = "float32", overwrite: bool = False, progress=None) -> dict:
    """Call the export engine; raises ImportError/AttributeError when this version has no merge, ExportError on problems."""
    from studio.engine.export import merge_adapter

    src = Path(source).expanduser()
    out = Path(out_dir).expanduser() if out_dir else (src / MERGED if (src / rundir.CONFIG).is_file() else src.parent / MERGED)
    return merge_adapter(str(src), str(out), dtype=dtype, overwrite=overwrite, progress=progress)


def on_merge(source: str, out_dir: str, dtype: str, overwrite: bool, lang: str, progress=gr.Progress()) -> list:
    if not (source or "").strip():
        return [t("export.pick", lang), None]
    try:
        result = merge(source.strip(), (out_dir or "").strip(), dtype, bool(overwrite), progress=lambda f, msg: progress(f, desc=msg))
    except (ImportError, AttributeError) as exc:
        return [t("export.unavailable", lang, why=exc), None]
    except Exception as exc:  # ExportError/VerificationError/ModelLoadError: all are messages for the user
        gr.Warning(str(exc))
        return [t("err.generic", lang, error=exc), getattr(exc, "result", None)]
    diff = result.get("max_abs_diff")
    text = t("export.done", lang, out=result.get("out_dir"), size=fmt_size(result.get("size_bytes")),
             diff="–" if diff is None else f"{diff:.2e}")
    if result.get("ok") is False:
        text += "\n\n" + t("export.not_ok", lang, diff=diff)
    return [text, result]


def relabel(ctx: AppContext, refs: ExportRefs, lang: str) -> dict:
    return {}
