"""The training workloads the speed benchmark and the profile share, written from the studio's own shipped text (no
download), deterministic for a seed.

- ``short``: a ~90-row identity set (one question, one answer a row, under the template's default system prompt), 3
  epochs, cutoff 128, batch 8: the self-cognition shape of work.
- ``long``: 32 multi-turn conversations of ~500 tokens each (turns drawn from the shipped demo and identity rows), 1 epoch,
  cutoff 1024, batch 4: long rows.

Each workload is written as TRL conversational prompt/completion rows and as the same conversations in ``messages`` form.
``short``: the plain TRL script gets the prompt/completion rows (completion-only loss) and the studio the messages
(assistant-only loss). ``long``: both sides get the messages and train on every token (TRL's default for ``messages``;
the studio with ``data.train_on_prompt=true``). Either way the two sides train on the same tokens.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Workload:
    name: str
    rows: int
    epochs: float
    cutoff: int
    batch: int
    turns: int  # user/assistant exchanges per conversation


WORKLOADS = {"short": Workload("short", 90, 3.0, 128, 8, 1), "long": Workload("long", 32, 1.0, 1024, 4, 10)}


def _pairs() -> list[tuple[str, str]]:
    """(question, answer) pairs from the shipped demo data and the filled identity rows, both languages."""
    import sys

    sys.path.insert(0, str(ROOT))
    from studio.engine.selfcog.identity import fill_placeholders, load_identity_templates

    pairs = [(r["instruction"] + (f"\n{r['input']}" if r.get("input") else ""), r["output"])
             for r in map(json.loads, (ROOT / "assets" / "data" / "demo_sft.jsonl").read_text().splitlines())]
    filled = fill_placeholders(load_identity_templates(), "小星", "Nova", "星辰实验室", "Star Lab")
    return pairs + [(r["instruction"], r["output"]) for r in filled]


def conversations(w: Workload, seed: int = 0) -> list[list[dict]]:
    rng = random.Random(seed)
    pairs = _pairs()
    if w.turns == 1:  # the identity set: identity rows only, one exchange each
        ident = pairs[-(len(pairs) - 24):] if len(pairs) > 24 else pairs
        return [[{"role": "user", "content": q}, {"role": "assistant", "content": a}] for q, a in rng.sample(ident, w.rows)]
    convs = []
    for _ in range(w.rows):
        msgs = []
        for q, a in rng.sample(pairs, w.turns):
            msgs += [{"role": "user", "content": q}, {"role": "assistant", "content": a}]
        convs.append(msgs)
    return convs


def write(w: Workload, folder: Path, seed: int = 0) -> dict[str, Path]:
    """{"messages": studio rows, "prompt_completion": TRL rows} for the workload, in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    convs = conversations(w, seed)
    paths = {"messages": folder / f"{w.name}-messages.jsonl", "prompt_completion": folder / f"{w.name}-pc.jsonl"}
    with open(paths["messages"], "w", encoding="utf-8") as fh:
        for msgs in convs:
            fh.write(json.dumps({"messages": msgs}, ensure_ascii=False) + "\n")
    with open(paths["prompt_completion"], "w", encoding="utf-8") as fh:
        for msgs in convs:
            fh.write(json.dumps({"prompt": msgs[:-1], "completion": msgs[-1:]}, ensure_ascii=False) + "\n")
    return paths


def token_counts(w: Workload, tokenizer, seed: int = 0) -> dict:
    """Tokens per epoch as both sides see them: every row rendered by the chat template (its default system prompt
    included), cut at the cutoff. ``tokens``: all of them (what a step computes on); ``rows``: how many."""
    lengths = [min(len(tokenizer.apply_chat_template(c, tokenize=True, return_dict=True)["input_ids"]), w.cutoff)
               for c in conversations(w, seed)]
    return {"rows": len(lengths), "tokens_per_epoch": sum(lengths), "mean_len": sum(lengths) / len(lengths),
            "max_len": max(lengths)}
