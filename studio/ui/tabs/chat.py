"""Chat tab: the same message streamed to the base model and to the tuned one (a run's adapter, a run folder, or an export:
merged folder, combined adapter, GGUF file), side by side, with system prompt and sampling settings.

One ``ChatModel`` per (base, adapter) is cached in the AppContext; with an adapter it holds one base copy and switches the
PEFT adapter off for the base answer and on for the tuned one; a merged folder or GGUF is a second model (the tab says
so). Models load (torch) on the first message, not at start-up.

Below the chat: "Serve with an OpenAI-compatible API" (``panels/serve.py``: ``studio serve`` as a child on 127.0.0.1) and
the arena (``panels/arena.py``: 2-4 models, blind votes -> a preference dataset -> DPO).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import gradio as gr

from studio.ui.common import tuned_outputs
from studio.ui.context import AppContext
from studio.ui.panels import arena as arena_panel
from studio.ui.panels import serve as serve_panel
from studio.ui.i18n import Texts, t
from studio.ui.limits import RANGES


@dataclass
class ChatRefs:
    texts: Texts
    model: gr.Textbox
    run: gr.Dropdown
    adapter: gr.Textbox
    system: gr.Textbox
    temperature: gr.Slider
    top_p: gr.Slider
    max_new_tokens: gr.Slider
    base_bot: gr.Chatbot
    tuned_bot: gr.Chatbot
    prompt: gr.Textbox
    send: gr.Button
    clear: gr.Button
    note: gr.Markdown  # what the tuned side is and what it costs in memory
    arena: arena_panel.ArenaRefs | None = None
    serve: serve_panel.ServeRefs | None = None


def build(ctx: AppContext, lang: gr.State) -> ChatRefs:
    tx = Texts(ctx.lang)
    with gr.Row():
        model = tx.make(gr.Textbox, label="chat.model", info="chat.model_info", value="default", elem_id="chat-model", scale=2)
        run = tx.make(gr.Dropdown, label="chat.run", choices=tuned_outputs(ctx), value=None, elem_id="chat-run", scale=2)
        adapter = tx.make(gr.Textbox, label="chat.adapter", elem_id="chat-adapter", scale=3)
    note = gr.Markdown("", elem_id="chat-note")
    with tx.make(gr.Accordion, label="chat.settings", open=False):
        system = tx.make(gr.Textbox, label="chat.system", lines=2)
        with gr.Row():
            temperature = tx.make(gr.Slider, label="chat.temperature", **RANGES["temperature"].slider(), value=0.0)
            top_p = tx.make(gr.Slider, label="chat.top_p", **RANGES["top_p"].slider(), value=1.0)
            max_new = tx.make(gr.Slider, label="chat.max_new", **RANGES["max_new_tokens"].slider(), value=256)
    with gr.Row(equal_height=True):
        base_bot = tx.make(gr.Chatbot, label="chat.base", height=380, elem_id="chat-base")
        tuned_bot = tx.make(gr.Chatbot, label="chat.tuned", height=380, elem_id="chat-tuned")
    with gr.Row():
        prompt = tx.make(gr.Textbox, label="chat.prompt", placeholder="chat.prompt_ph", scale=5, elem_id="chat-prompt")
        with gr.Column(scale=1, min_width=120):
            send = tx.make(gr.Button, value="chat.send", variant="primary", elem_id="chat-send")
            clear = tx.make(gr.Button, value="chat.clear")
    with tx.make(gr.Accordion, label="serve.title", open=False):
        served = serve_panel.build(ctx, tx, lang, model, adapter)
    with tx.make(gr.Accordion, label="arena.title", open=False, elem_id="arena"):
        arena = arena_panel.build(ctx, tx, lang, model, system, temperature, top_p, max_new)
    refs = ChatRefs(tx, model, run, adapter, system, temperature, top_p, max_new, base_bot, tuned_bot, prompt, send, clear,
                    note, arena, served)
    ui = dict(api_visibility="private")
    run.focus(lambda: gr.update(choices=tuned_outputs(ctx)), None, run, **ui)
    run.change(lambda folder: on_run(ctx, folder), run, [adapter, model], **ui)
    adapter.change(lambda path, lg: tuned_note(ctx, path, lg), [adapter, lang], note, **ui)
    inputs = [model, adapter, system, temperature, top_p, max_new, prompt, base_bot, tuned_bot, lang]
    def on_send(*args):  # a generator function itself: gradio streams only when the handler is one (a lambda is not)
        yield from _on_send(ctx, *args)

    for trigger in (send.click, prompt.submit):
        trigger(on_send, inputs, [base_bot, tuned_bot, prompt], concurrency_limit=1, concurrency_id="chat", **ui)
    clear.click(lambda: ([], []), None, [base_bot, tuned_bot], **ui)
    return refs


def on_run(ctx: AppContext, folder: str | None) -> list:
    """Picking a run's adapter (or an export) also picks the base model it was trained (exported) from."""
    if not folder:
        return [gr.skip(), gr.skip()]
    from studio.engine.generate import base_model_of  # reads a few small files; no torch

    try:
        base = base_model_of(folder, access=ctx.access)
    except OSError as exc:  # AccessError: a folder the page may not use
        gr.Warning(str(exc))
        return [gr.skip(), gr.skip()]
    return [folder, base or gr.skip()]


def tuned_note(ctx: AppContext, path: str, lang: str) -> str:
    """A merged folder, full run or GGUF is a second model in memory; say so before it is loaded."""
    from studio.engine.generate import describe_tuned
    from studio.engine.models import ModelLoadError

    if not (path or "").strip():
        return ""
    try:
        src = describe_tuned(path, access=ctx.access)
    except (ModelLoadError, OSError):
        return ""
    return t("chat.separate", lang, kind=t(f"chat.kind.{src.kind}", lang)) if src.separate else ""


def picker_update(ctx: AppContext, path: str) -> dict:
    """The tuned picker showing ``path`` (added to the choices when it lives outside runs/ and exports/)."""
    choices = tuned_outputs(ctx)
    if path not in [c[1] for c in choices]:
        choices.append((Path(path).name, path))
    return gr.update(choices=choices, value=path)


def open_target(ctx: AppContext, path: str | None, lang: str) -> list:
    """[picker, adapter box, base model box, memory note] for another tab's "Open in Chat"."""
    if not path:
        return [gr.skip()] * 4
    adapter, base = on_run(ctx, path)
    return [picker_update(ctx, path), adapter, base, tuned_note(ctx, path, lang)]


def text_of(content) -> str:
    """A Chatbot message's content (a string, or gradio's list of typed parts) as plain text."""
    if isinstance(content, str):
        return content
    if isinstance(content, dict):
        return content.get("text") or ""
    if isinstance(content, (list, tuple)):
        return "".join(text_of(c) for c in content)
    return str(content or "")


def as_messages(system: str, history: list[dict]) -> list[dict]:
    msgs = [{"role": "system", "content": system.strip()}] if system and system.strip() else []
    return msgs + [{"role": m["role"], "content": text_of(m["content"])} for m in history if m.get("role") in ("user", "assistant")]


def _on_send(ctx: AppContext, model, adapter, system, temperature, top_p, max_new, prompt, base_hist, tuned_hist, lang):
    prompt = (prompt or "").strip()
    if not prompt:
        gr.Warning(t("chat.empty", lang))
        yield gr.skip(), gr.skip(), gr.skip()
        return
    adapter = (adapter or "").strip()
    base_hist = list(base_hist or []) + [{"role": "user", "content": prompt}]
    tuned_hist = list(tuned_hist or []) + [{"role": "user", "content": prompt}]
    msgs_base, msgs_tuned = as_messages(system, base_hist), as_messages(system, tuned_hist)
    loading = t("chat.loading", lang, model=model or "default")
    tuned_wait = loading if adapter else t("chat.no_tuned", lang)
    yield (base_hist + [{"role": "assistant", "content": loading}], tuned_hist + [{"role": "assistant", "content": tuned_wait}], "")
    waiting = "…" if adapter else tuned_wait
    try:
        for base, tuned in ctx.compare(model, adapter, msgs_base, msgs_tuned, temperature, top_p, max_new):
            yield (base_hist + [{"role": "assistant", "content": base}],
                   tuned_hist + [{"role": "assistant", "content": tuned if tuned is not None else waiting}], gr.skip())
    except Exception as exc:  # ModelLoadError, a bad adapter folder, out of memory: tell the user, keep the page alive
        gr.Warning(str(exc))
        msg = t("err.generic", lang, error=exc)
        yield base_hist + [{"role": "assistant", "content": msg}], tuned_hist + [{"role": "assistant", "content": msg}], prompt


def relabel(ctx: AppContext, refs: ChatRefs, lang: str) -> dict:
    return {}
