"""The Chat tab's "Serve with an OpenAI-compatible API" panel: starts ``studio serve`` for the tuned side (or the base
model) as a child process on 127.0.0.1 with a generated key, shows its URL, key, command and a client snippet, and stops
it. The child and its folder are ``studio.engine.jobs.serving``'s; a reloaded page finds the running server again.
"""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from studio.engine.jobs import serving
from studio.ui.context import AppContext
from studio.ui.i18n import Texts, t

TICK_S = 2.0


@dataclass
class ServeRefs:
    start: gr.Button
    stop: gr.Button
    status: gr.Markdown
    snippet: gr.Code
    timer: gr.Timer
    folder: gr.State  # the server folder this page follows


def build(ctx: AppContext, tx: Texts, lang: gr.State, model: gr.Textbox, adapter: gr.Textbox) -> ServeRefs:
    tx.make(gr.Markdown, value="serve.intro")
    with gr.Row():
        start = tx.make(gr.Button, value="serve.start", variant="primary", elem_id="serve-start")
        stop = tx.make(gr.Button, value="serve.stop", variant="stop", elem_id="serve-stop")
    status = gr.Markdown("", elem_id="serve-status")
    snippet = tx.make(gr.Code, label="serve.snippet", language="python", value="", interactive=False, lines=5,
                      elem_id="serve-snippet")
    refs = ServeRefs(start, stop, status, snippet, gr.Timer(TICK_S), gr.State(""))
    ui = dict(api_visibility="private")
    outs = [refs.folder, refs.status, refs.snippet]
    start.click(lambda m, a, lg: on_start(ctx, m, a, lg), [model, adapter, lang], outs, **ui)
    stop.click(lambda folder, lg: on_stop(ctx, folder, lg), [refs.folder, lang], outs, **ui)
    refs.timer.tick(lambda folder, lg: on_tick(ctx, folder, lg), [refs.folder, lang], outs, show_progress="hidden", **ui)
    return refs


def on_start(ctx: AppContext, model: str, adapter: str, lang: str) -> list:
    try:
        folder = serving.start((model or "default").strip(), (adapter or "").strip(), access=ctx.access)
    except (RuntimeError, OSError) as exc:  # one already running; AccessError: a path the page may not use
        return [gr.skip(), t("err.generic", lang, error=exc), gr.skip()]
    return [str(folder), *view(serving.status(folder, access=ctx.access), lang)]


def on_stop(ctx: AppContext, folder: str, lang: str) -> list:
    """Stop the newest server started from the page (the page has one at a time)."""
    stopped = serving.stop(access=ctx.access)
    msg = t("serve.stopped", lang) if stopped else t("serve.none", lang)
    return [folder, msg, ""]


def on_tick(ctx: AppContext, folder: str, lang: str) -> list:
    """Follow the server this page started, or (after a reload) the one still running."""
    if not folder:
        running = serving.current()
        if running is None:
            return [gr.skip()] * 3
        folder = str(running)
    try:
        return [folder, *view(serving.status(folder, access=ctx.access), lang)]
    except OSError as exc:  # AccessError: a folder outside what the page may read
        return [gr.skip(), t("err.generic", lang, error=exc), gr.skip()]


def view(info: dict, lang: str) -> list[str]:
    """[status markdown, client snippet] for a server's status."""
    state = info["state"]
    if state == "serving":
        model = (info["models"] or ["default"])[0]
        text = t("serve.serving", lang, url=info["url"], api_key=info["key"], models=", ".join(info["models"]),
                 command=info["command"])
        return [text, serving.client_snippet(info["url"], info["key"], model)]
    if state == "starting":
        return [t("serve.starting", lang, command=info["command"]), ""]
    tail = f"\n\n```text\n{info['log_tail']}\n```" if state == "failed" and info["log_tail"] else ""
    return [t(f"serve.{state}", lang) + tail, ""]
