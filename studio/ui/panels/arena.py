"""The Chat tab's arena: 2 to 4 models (the base, runs, exports, GGUF files) answer one prompt side by side, blind by
default; the vote (best side, tie, all bad, optionally with a better answer written by the user) is appended to a
preference dataset in the data workspace, a table shows win rates per pair of models, and one button trains DPO on the
votes. The engine side, shared with the ``/arena_*`` endpoints, is ``studio.engine.arena``; models load on the first
round (torch), in this process, one generation at a time with the Chat tab.
"""

from __future__ import annotations

import html
from dataclasses import dataclass

import gradio as gr
import pandas as pd

from studio import config as C
from studio.engine import arena as A
from studio.ui.common import tuned_outputs
from studio.ui.context import AppContext
from studio.ui.i18n import Texts, t

TABLE_COLUMNS = ["model_1", "model_2", "votes", "wins_1", "wins_2", "ties", "both_bad", "win_rate_1"]


@dataclass
class ArenaRefs:
    models: gr.Dropdown
    blind: gr.Checkbox
    dataset: gr.Textbox
    prompt: gr.Textbox
    ask: gr.Button
    answers: list[gr.Textbox]  # sides A..D
    edit_from: gr.Radio
    better: gr.Textbox
    votes: dict[str, gr.Button]  # "A".."D", "tie", "bad"
    reveal: gr.Markdown
    table: gr.Dataframe
    train: gr.Button
    train_note: gr.Markdown
    round: gr.State  # {"id": round waiting for its vote}: per user; which side is which stays on the server


def model_choices(ctx: AppContext, lang: str) -> list[tuple[str, str]]:
    return [(t("arena.base_choice", lang), A.BASE)] + tuned_outputs(ctx)


def build(ctx: AppContext, tx: Texts, lang: gr.State, model: gr.Textbox, system: gr.Textbox, temperature: gr.Slider,
          top_p: gr.Slider, max_new: gr.Slider) -> ArenaRefs:
    """The arena's components (inside the caller's layout) and their events; the chat tab's base model, system prompt
    and sampling settings apply to every side."""
    tx.make(gr.Markdown, value="arena.intro")
    with gr.Row():
        models = tx.make(gr.Dropdown, label="arena.models", info="arena.models_info", choices=model_choices(ctx, ctx.lang),
                         value=[A.BASE], multiselect=True, max_choices=A.MAX_MODELS, allow_custom_value=True,
                         elem_id="arena-models", scale=4)
        blind = tx.make(gr.Checkbox, label="arena.blind", value=True, elem_id="arena-blind", scale=1)
        dataset = tx.make(gr.Textbox, label="arena.dataset", value=A.DEFAULT_DATASET, elem_id="arena-dataset", scale=1)
    with gr.Row():
        prompt = tx.make(gr.Textbox, label="arena.prompt", elem_id="arena-prompt", scale=5)
        ask = tx.make(gr.Button, value="arena.ask", variant="primary", elem_id="arena-ask", scale=1)
    with gr.Row(equal_height=True):
        answers = [gr.Textbox(label=s, lines=6, max_lines=16, interactive=False, visible=i < 2, elem_id=f"arena-{s}")
                   for i, s in enumerate(A.SIDES)]
    with gr.Row():
        edit_from = tx.make(gr.Radio, label="arena.edit_from", choices=list(A.SIDES[:2]), value=None, scale=1)
        better = tx.make(gr.Textbox, label="arena.better", info="arena.better_info", lines=3, elem_id="arena-better",
                         scale=4)
    with gr.Row():
        votes = {s: tx.make(gr.Button, value=_vote_label(s), visible=i < 2, elem_id=f"arena-vote-{s}")
                 for i, s in enumerate(A.SIDES)}
        votes["tie"] = tx.make(gr.Button, value="arena.vote_tie", elem_id="arena-vote-tie")
        votes["bad"] = tx.make(gr.Button, value="arena.vote_bad", elem_id="arena-vote-bad")
    reveal = gr.Markdown("", elem_id="arena-reveal")
    table = tx.make(gr.Dataframe, label="arena.table", value=stats_frame(A.DEFAULT_DATASET), interactive=False,
                    elem_id="arena-table")
    with gr.Row():
        train = tx.make(gr.Button, value="arena.train", elem_id="arena-train", scale=1)
        train_note = gr.Markdown("", elem_id="arena-train-note")
    refs = ArenaRefs(models, blind, dataset, prompt, ask, answers, edit_from, better, votes, reveal, table, train,
                     train_note, gr.State({}))
    _wire(ctx, refs, lang, [model, system, temperature, top_p, max_new])
    return refs


def _vote_label(side: str) -> tuple[str, str]:
    return (f"{side} is better", f"{side} 更好")


def _wire(ctx: AppContext, refs: ArenaRefs, lang: gr.State, settings: list) -> None:
    ui = dict(api_visibility="private")
    refs.models.focus(lambda lg: gr.update(choices=model_choices(ctx, lg)), lang, refs.models, **ui)
    refs.models.change(on_models, refs.models, [*refs.answers, *[refs.votes[s] for s in A.SIDES], refs.edit_from], **ui)
    refs.dataset.change(lambda name: stats_frame(name), refs.dataset, refs.table, **ui)
    shown = [refs.round, *refs.answers, refs.reveal, refs.better]

    def ask(*args):  # a generator function itself: gradio streams only when the handler is one
        yield from on_ask(ctx, *args)

    for trigger in (refs.ask.click, refs.prompt.submit):
        trigger(ask, [refs.models, refs.blind, *settings, refs.prompt, lang], shown, concurrency_limit=1,
                concurrency_id="chat", **ui)
    refs.edit_from.change(lambda side, *ans: ans[A.SIDES.index(side)] if side else gr.skip(),
                          [refs.edit_from, *refs.answers], refs.better, **ui)
    for vote, button in refs.votes.items():
        button.click(lambda rnd, better, name, lg, v=vote: on_vote(ctx, rnd, v, better, name, lg),
                     [refs.round, refs.better, refs.dataset, lang], [refs.round, refs.reveal, refs.table, refs.better],
                     **ui)
    refs.train.click(lambda name, base, lg: on_train(ctx, name, base, lg), [refs.dataset, settings[0], lang],
                     refs.train_note, **ui)


def on_models(picked: list[str] | None) -> list:
    """One answer box and one vote button per picked model (2 shown at least)."""
    n = max(2, min(A.MAX_MODELS, len(picked or [])))
    boxes = [gr.update(visible=i < n, value="") for i in range(A.MAX_MODELS)]
    buttons = [gr.update(visible=i < n) for i in range(A.MAX_MODELS)]
    return [*boxes, *buttons, gr.update(choices=list(A.SIDES[:n]), value=None)]


def on_ask(ctx: AppContext, picked, blind, model, system, temperature, top_p, max_new, prompt, lang):
    """Stream every side's answer; the round waits (server side) for its vote."""
    empty = [""] * A.MAX_MODELS
    try:
        sides = [A.contender(p, model, access=ctx.access) for p in (picked or [])]
        rnd = ctx.arena.start(sides, prompt, system, bool(blind), dict(temperature=float(temperature),
                                                                      top_p=float(top_p), max_new_tokens=int(max_new)))
    except (A.ArenaError, OSError) as exc:  # OSError: AccessError (a path the page may not use)
        gr.Warning(str(exc))
        yield [gr.skip(), *[gr.skip()] * A.MAX_MODELS, t("err.generic", lang, error=exc), gr.skip()]
        return
    header = t("arena.answering", lang) if rnd.blind else _reveal_md(rnd.reveal(), lang)
    yield [{}, *empty, header, ""]
    try:
        for answers in ctx.arena.stream(rnd):
            yield [gr.skip(), *(answers + empty)[:A.MAX_MODELS], gr.skip(), gr.skip()]
    except Exception as exc:  # ModelLoadError, a bad adapter, out of memory: say so, keep the page alive
        gr.Warning(str(exc))
        yield [gr.skip(), *[gr.skip()] * A.MAX_MODELS, t("err.generic", lang, error=exc), gr.skip()]
        return
    done = t("arena.vote_now", lang) if rnd.blind else _reveal_md(rnd.reveal(), lang) + "\n\n" + t("arena.vote_now", lang)
    yield [{"id": rnd.id}, *[gr.skip()] * A.MAX_MODELS, done, gr.skip()]


def on_vote(ctx: AppContext, rnd: dict, vote: str, better: str, dataset: str, lang: str) -> list:
    if not (rnd or {}).get("id"):
        return [gr.skip(), t("arena.no_round", lang), gr.skip(), gr.skip()]
    try:
        res = ctx.arena.vote(rnd["id"], vote, better, dataset)
    except (A.ArenaError, OSError, ValueError) as exc:  # DataError is a ValueError: a bad row, a full disk
        return [gr.skip(), t("err.generic", lang, error=exc), gr.skip(), gr.skip()]
    saved = (t("arena.saved", lang, pairs=res["pairs"], dataset=res["dataset"], version=res["version"], rows=res["rows"])
             if res["pairs"] else t("arena.saved_none", lang))
    return [{}, _reveal_md(res["reveal"], lang) + "\n\n" + saved, stats_frame(dataset), ""]


def _reveal_md(reveal: dict, lang: str) -> str:
    return t("arena.reveal", lang) + " " + " · ".join(f"**{s}** = `{html.escape(label)}`" for s, label in reveal.items())


def stats_frame(dataset: str) -> pd.DataFrame:
    try:
        rows = A.win_rates(A.read_votes(dataset or A.DEFAULT_DATASET))
    except OSError:  # AccessError: a name that is no folder name
        rows = []
    return pd.DataFrame([[r[c] for c in TABLE_COLUMNS] for r in rows], columns=TABLE_COLUMNS)


def on_train(ctx: AppContext, dataset: str, base: str, lang: str) -> str:
    """"Train DPO on my votes": the DPO preset on the arena's dataset, through the run queue (the Train tab shows it)."""
    try:
        cfg = A.dpo_config(dataset, (base or "").strip())
        job = ctx.jobs.submit(cfg, access=ctx.access)
    except (A.ArenaError, C.ConfigError, OSError, ValueError) as exc:
        return t("err.generic", lang, error=exc)
    return t("arena.train_started", lang, run=job.run_id, dataset=cfg.data.datasets[0])
