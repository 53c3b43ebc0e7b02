"""The Data tab's versions: the table of an editable copy's versions, pruning old version files (the count is shown and
confirmed before anything is removed), and what keeps two sessions from overwriting each other's edits.

Each session remembers the version its rows were read at (``seen``, a ``gr.State`` of {"spec", "version"}); the edit
handlers open the workspace with that version as ``base``, so an edit made from an older version than the newest (another
tab saved meanwhile) is refused with a message, never saved over the other tab's edit. Thin over
``studio.engine.data.workspace``; no torch.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import gradio as gr
import pandas as pd

from studio.ui.i18n import Texts, t


@dataclass
class PruneRefs:
    keep: gr.Number
    preview: gr.Button
    confirm: gr.Button
    pending: gr.State  # {"spec", "keep", "count", "base"}: what the preview announced; the confirm removes exactly that


def build(tx: Texts) -> PruneRefs:
    with gr.Row():
        keep = tx.make(gr.Number, label="data.prune_keep", value=10, precision=0, minimum=1)
        preview = tx.make(gr.Button, value="data.prune_btn", elem_id="data-prune")
        confirm = tx.make(gr.Button, value="data.prune_confirm", variant="stop", visible=False, elem_id="data-prune-confirm")
    return PruneRefs(keep, preview, confirm, gr.State({}))


def wire(access, refs: PruneRefs, spec: gr.Textbox, lang: gr.State, seen: gr.State, message: gr.Markdown,
         versions: gr.Dataframe) -> None:
    ui = dict(api_visibility="private")
    refs.preview.click(lambda *a: on_prune_preview(access, *a), [spec, refs.keep, lang, seen],
                       [message, refs.confirm, refs.pending], **ui)
    refs.confirm.click(lambda *a: on_prune(access, *a), [spec, refs.pending, lang],
                       [message, versions, refs.confirm, refs.pending], **ui)


def errors() -> tuple:
    from studio.engine.data.formats import DataError
    from studio.engine.models import ModelLoadError

    return (DataError, ModelLoadError, OSError, ValueError, KeyError)


def workspace(access, spec: str, base: int | None = None):
    """The Workspace behind a spec, or None when the spec is not an editable copy. ``base``: the version the session's
    rows were read at (its edits are refused once another session saved a newer one). ``access``: the page's policy."""
    from studio.engine.data.workspace import open_workspace

    return open_workspace(spec, base, access=access)


def seen_of(access, spec: str) -> dict:
    """{"spec", "version"}: the newest version of the editable copy behind ``spec`` (None for any other dataset)."""
    try:
        ws = workspace(access, spec)
    except errors():
        ws = None
    return {"spec": (spec or "").strip(), "version": ws.head.version if ws is not None else None}


def tracked(access, handler, spec_of=None):
    """``handler`` + the version its rows were read at, as a last output. The version is read *before* the rows: should
    another session save in between, the rows are newer than the version and an edit is refused, never the reverse."""
    def run(*args):
        seen = seen_of(access, spec_of(*args[:2]) if spec_of else args[0])
        return [*handler(access, *args), seen]
    return run


def base_of(spec: str, seen: dict | None) -> int | None:
    """The version an edit of ``spec`` was made from (None: no rows of this editable copy were shown, nothing to check)."""
    seen = seen or {}
    return seen.get("version") if seen.get("spec") == (spec or "").strip() else None


def edit_error(exc: Exception, lang: str) -> str:
    """The message of a refused edit: another session's newer version and a full disk get their own, in ``lang``."""
    from studio.engine.data.versions import DiskFullError, StaleVersionError

    if isinstance(exc, StaleVersionError):
        return t("data.stale", lang, base=exc.base, head=exc.head.version, action=exc.head.action, detail=exc.head.detail)
    gr.Warning(str(exc))
    if isinstance(exc, DiskFullError):
        return t("data.disk_full", lang, name=str(exc).split(": disk full")[0])
    return t("err.generic", lang, error=exc)


def versions_frame(access, spec: str):
    """The versions of the editable copy behind ``spec``, newest first (``file``: kept, or pruned by the user)."""
    ws = workspace(access, spec)
    if ws is None:
        return None
    kept = ws.kept_versions()
    return pd.DataFrame([{"version": v.version, "from": v.parent or "", "action": v.action, "detail": v.detail, "rows": v.rows,
                          "time": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(v.time)),
                          "file": "kept" if v.version in kept else "pruned"} for v in reversed(ws.history())])


def on_prune_preview(access, spec: str, keep, lang: str, seen: dict | None = None) -> list:
    """[message, confirm button, pending]: how many version files pruning would remove, before anything is removed."""
    try:
        ws = workspace(access, spec, base_of(spec, seen))
        if ws is None:
            return [t("data.prune_not_ws", lang), gr.update(visible=False), {}]
        keep = int(keep or 0)
        gone = ws.prunable(keep)
    except (*errors(), TypeError) as exc:
        return [edit_error(exc, lang), gr.update(visible=False), {}]
    if not gone:
        return [t("data.prune_none", lang, keep=keep), gr.update(visible=False), {}]
    which = ", ".join(map(str, gone[:10])) + (", …" if len(gone) > 10 else "")
    pending = {"spec": ws.spec, "keep": keep, "count": len(gone), "base": ws.head.version}
    return [t("data.prune_preview", lang, keep=keep, n=len(gone), which=which), gr.update(visible=True), pending]


def on_prune(access, spec: str, pending: dict | None, lang: str) -> list:
    """[message, versions, confirm button, pending]: prune exactly what the preview said, or refuse and remove nothing
    (another session saved or pruned since, or the spec now names another dataset)."""
    pending, hide = pending or {}, gr.update(visible=False)
    try:
        ws = workspace(access, spec, base=pending.get("base"))
        if ws is None or not pending or pending.get("spec") != ws.spec:
            return [t("data.prune_not_ws", lang), gr.skip(), hide, {}]
        n = ws.prune(pending["keep"], expect=pending["count"])
    except errors() as exc:
        return [edit_error(exc, lang), versions_frame(access, spec), hide, {}]
    return [t("data.prune_done", lang, n=n, keep=pending["keep"]), versions_frame(access, ws.spec), hide, {}]
