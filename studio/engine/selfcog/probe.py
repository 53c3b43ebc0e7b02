"""Before/after proof for self-cognition runs: ask the base and the tuned model the same questions, score, write probe.json.

- **Identity**: held-out identity questions (``assets/identity/probe_identity.json``, none of them a training row; a
  ``dev`` and a ``test`` part, asked like the general questions below), each asked in four settings
  (``questions.SETTINGS``: no system prompt, the template's default system prompt given explicitly, a user's own
  system prompt, as the second turn of a conversation). Scored per language and setting; the
  weakest setting is reported next to the mean.
- **Retention**: general questions with accepted answers (``assets/general/retention_questions.json``), split into
  ``dev`` (for choosing a recipe) and ``test`` (only for reporting). Retention = the share of the questions the base
  answers right that the tuned model still answers right (kept / base-right); an answer that names the new identity is
  wrong. ``split="test"`` (the preset's default, ``identity.probe_split``) asks and reports the test questions only;
  ``split="dev"`` asks only dev (identity and general), so recipe search never sees the test questions;
  ``split="both"`` asks both and reports test (dev and test side by side). The tuned model is asked only the general
  questions the base answered right: retention counts nothing else, and most questions of a 135M model's set are ones
  it gets wrong, so the set can grow without the probe growing with it (the other rows say "not asked").
- **KL**: the mean per-token KL(tuned ‖ base) on the base's own greedy answers (``divergence.py``) to the general
  questions it got right, per split; it moves before answers flip. Only those: each answer costs a forward pass on each
  side (113 answers took 56 s on 2 cores), and they are the ones the tuned side is asked anyway.

Scoring rules: ``scoring.py``. Each side answers the way a user sees it: the base with its own chat template, the tuned
model with the template saved in its adapter folder. Greedy decoding, one model in memory (a LoRA is switched off for the
base, and merged into the weights while the tuned side generates: same answers, 3-4x faster), one batch for many
questions; the base answers are cached under ``$STUDIO_HOME/cache`` (they never change).
``run_probes(cfg, run_dir)`` is the runner's hook (after training when ``identity.probe`` is on).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
from pathlib import Path

from studio.engine.selfcog import questions as Q
from studio.engine.selfcog.scoring import leaked, score_general, score_identity
from studio.paths import studio_home

PROBE_FILE = "probe.json"
VERSION = 2
MAX_NEW_TOKENS = 48
# Decoding a 135M model on CPU is bound by reading the weights once per step: one batch reads them once for all questions.
BATCH_SIZE = 96
# The tuned side's identity answers end at very different lengths (a short "I am Nova." or a loop to the budget), and a
# batch runs until its last answer ends: smaller batches stop sooner. benchmarks/probe_batching.py (192 identity and
# 112 general questions, the very same answers at every size): identity 99.0 s at 96, 86.5 s at 48, 80.2 s at 32;
# general 31-32 s at all three
IDENTITY_BATCH_SIZE = 32
NOT_ASKED = "(not asked: the base got it wrong)"


# ----------------------------------------------------------------------------------------------------------------------------
# What is asked


def probe_items(split: str = "test", default_system: str = "") -> list[dict]:
    """Every question the probe asks, each with its ``messages``: the identity questions of the splits ``split`` asks
    (``questions.splits_asked``) in every setting, then the general questions of those splits."""
    items, asked = [], Q.splits_asked(split)
    for part in asked:
        # i counts within the split: each question keeps its second-turn opener whatever else is asked
        for i, q in enumerate(Q.load_identity_questions(part)):
            for setting in Q.SETTINGS:
                messages = Q.conversation(q["question"], q["lang"], setting, default_system, i)
                if messages is not None:  # a template without a default system prompt has no default_system setting
                    items.append(dict(q, kind="identity", setting=setting, messages=messages))
    for q in Q.load_retention_questions():
        if q["split"] in asked:
            items.append(dict(q, kind="general", messages=[{"role": "user", "content": q["question"]}]))
    return items


def _forbidden(names: dict) -> tuple[str, ...]:
    return tuple(dict.fromkeys(v for v in names.values() if v))


def base_knows(items: list[dict], base: list[str], names: dict) -> list[bool]:
    """Per item, whether the tuned side is asked it: every identity question, the general ones the base got right."""
    forbidden = _forbidden(names)
    return [it["kind"] == "identity" or score_general(b, it["answers"], it["question"], forbidden)
            for it, b in zip(items, base)]


def score_rows(items: list[dict], base: list[str], tuned: list[str | None], names: dict) -> list[dict]:
    """One row per item: the answers side by side and whether each is right (``tuned_ok`` None: not asked)."""
    forbidden = _forbidden(names)
    rows = []
    for item, b, t in zip(items, base, tuned):
        row = {k: v for k, v in item.items() if k != "messages"}
        row.update(base_answer=b, tuned_answer=t)
        if item["kind"] == "identity":
            ok = [score_identity(a, names, item["asks_author"], item["question"], asks_name=item.get("asks_name", True))
                  for a in (b, t)]
        else:
            ok = [score_general(a, item["answers"], item["question"], forbidden) if a is not None else None for a in (b, t)]
            # the identity sentence given to a general question: the failure to watch for
            row["identity_leak"] = t is not None and leaked(t, forbidden, item["question"], item["answers"])
        row.update(base_ok=ok[0], tuned_ok=ok[1])
        row["change"] = change(row)  # "lost" / "gained" / "": the flipped rows, findable in probe.json
        rows.append(row)
    return rows


# ----------------------------------------------------------------------------------------------------------------------------
# Scores (pure)


def share(flags: list[bool]) -> float | None:
    return round(sum(flags) / len(flags), 4) if flags else None


def _identity_scores(rows: list[dict]) -> dict:
    per_lang = {}
    for lang in sorted({r["lang"] for r in rows}):
        lr = [r for r in rows if r["lang"] == lang]
        settings = {s: {"base": share([r["base_ok"] for r in sr]), "tuned": share([r["tuned_ok"] for r in sr]), "n": len(sr)}
                    for s in Q.SETTINGS if (sr := [r for r in lr if r["setting"] == s])}
        weakest = min(settings, key=lambda s: settings[s]["tuned"]) if settings else None
        per_lang[lang] = {"base": share([r["base_ok"] for r in lr]), "tuned": share([r["tuned_ok"] for r in lr]),
                          "n": len(lr), "settings": settings, "weakest": weakest,
                          "min": settings[weakest]["tuned"] if weakest else None}
    mins = [v["min"] for v in per_lang.values() if v["min"] is not None]
    return {"base": share([r["base_ok"] for r in rows]), "tuned": share([r["tuned_ok"] for r in rows]), "n": len(rows),
            "min": min(mins) if mins else None, "per_lang": per_lang}


def _retention_scores(rows: list[dict]) -> dict:
    """Kept / base-right over ``rows`` (general rows of one split), overall and per language."""
    def block(rs):
        known = [r for r in rs if r["base_ok"]]
        return {"score": share([bool(r["tuned_ok"]) for r in known]), "kept": sum(bool(r["tuned_ok"]) for r in known),
                "base_right": len(known), "tuned_right": sum(r["tuned_ok"] is True for r in rs),
                "gained": sum(r["tuned_ok"] is True and not r["base_ok"] for r in rs),  # of the questions asked
                "not_asked": sum(r["tuned_ok"] is None for r in rs),
                "identity_leaks": sum(bool(r.get("identity_leak")) for r in rs), "n": len(rs)}
    out = block(rows)
    out["per_lang"] = {lang: block([r for r in rows if r["lang"] == lang]) for lang in sorted({r["lang"] for r in rows})}
    return out


def _kl_scores(rows: list[dict]) -> dict:
    from studio.engine.selfcog.divergence import mean_kl

    measured = [{"tokens": r.get("kl_tokens", 0), "kl": r.get("kl"), "kl_reverse": r.get("kl_reverse")} for r in rows]
    kl, rev = mean_kl(measured, "kl"), mean_kl(measured, "kl_reverse")
    return {"kl": None if kl is None else round(kl, 6), "kl_reverse": None if rev is None else round(rev, 6),
            "tokens": sum(m["tokens"] for m in measured if m["kl"] is not None), "n": len(rows)}


def summarize(rows: list[dict], split: str = "test") -> dict:
    """Identity (per language and setting), retention and KL (per split; the top level holds ``split``)."""
    general = [r for r in rows if r["kind"] == "general"]
    splits = [s for s in Q.SPLITS if any(r.get("split") == s for r in general)]
    split = Q.reported_split(split)
    retention = {s: _retention_scores([r for r in general if r.get("split") == s]) for s in splits}
    kl = {s: _kl_scores([r for r in general if r.get("split") == s]) for s in splits}
    empty = _retention_scores([])
    return {
        "version": VERSION, "split": split,
        "identity": _identity_scores([r for r in rows if r["kind"] == "identity" and r.get("split", split) == split]),
        "retention": dict(retention.get(split, empty), split=split, splits=retention),
        "kl": dict(kl.get(split, _kl_scores([])), split=split, splits=kl),
    }


# ----------------------------------------------------------------------------------------------------------------------------
# The runner's hook (generation goes through the chat engine, studio.engine.generate, so the probe sees what a user sees)


def run_probes(cfg, run_dir: Path, log=print, split: str | None = None, items: list[dict] | None = None,
               ask_all: bool = False) -> dict:
    """Ask base and tuned, score, measure KL, write ``run_dir/probe.json``; returns the scores (no rows).

    ``split`` defaults to ``cfg.identity.probe_split``; ``items`` replaces the shipped questions (tests); ``ask_all``
    asks the tuned side the general questions the base got wrong too (how many answers changed at all).
    """
    from studio.engine.generate import ChatModel
    from studio.engine.selfcog.divergence import answer_kl
    from studio.engine.selfcog.identity import default_system_of, names_from

    run_dir = Path(run_dir)
    start, cpu_start = time.time(), time.process_time()  # CPU seconds too: on a shared machine wall time says little
    split = split or getattr(cfg.identity, "probe_split", "test")
    names = names_from(cfg.identity.name_zh, cfg.identity.name_en, cfg.identity.author_zh, cfg.identity.author_en)
    chat = ChatModel(cfg.model.name_or_path, adapter=run_dir, trust_remote_code=cfg.model.trust_remote_code)
    items = items if items is not None else probe_items(split, default_system_of(chat.tokenizer))
    # similar lengths share a batch (less padding); both sides see the very same batches
    items = sorted(items, key=lambda it: len(json.dumps(it["messages"], ensure_ascii=False)))
    convs = [it["messages"] for it in items]
    base, timings = _base_answers(chat, convs, log)
    t = time.time()
    asked = [True] * len(items) if ask_all else base_knows(items, base, names)
    general = [i for i, it in enumerate(items) if it["kind"] == "general" and asked[i]]
    kl = answer_kl(chat, [convs[i] for i in general], [base[i] for i in general])
    timings["kl_s"] = round(time.time() - t, 1)
    t = time.time()
    budget = identity_budget(chat.tokenizer, names)
    with _merged(chat):  # last: the base side never runs on weights that were merged and unmerged
        tuned = _tuned_answers(chat, convs, [it["kind"] == "identity" for it in items], budget, asked)
    timings.update(tuned_s=round(time.time() - t, 1), cpu_s=round(time.process_time() - cpu_start, 1))
    rows = score_rows(items, base, tuned, names)
    for i, m in zip(general, kl):
        rows[i].update(kl_tokens=m["tokens"], kl=m["kl"], kl_reverse=m["kl_reverse"])
    result = summarize(rows, split)
    result.update(names=names, seconds=round(time.time() - start, 1), timings=timings, max_new_tokens=MAX_NEW_TOKENS,
                  identity_max_new_tokens=budget, rows=rows)
    (run_dir / PROBE_FILE).write_text(json.dumps(result, indent=1, ensure_ascii=False), encoding="utf-8")
    log(format_summary(result) + f" ({result['seconds']} s) -> {run_dir / PROBE_FILE}")
    return {k: v for k, v in result.items() if k != "rows"}


def rescore(result: dict) -> dict:
    """``result`` (a probe.json with its rows) scored again by the current rules and the current questions' fields
    (accepted answers, what each identity question asks; matched by id): the figures of runs made before a scoring
    change, without asking anything again. Rows whose tuned side was not asked stay not asked."""
    current = {q["id"]: q for q in Q.load_identity_questions() + Q.load_retention_questions()}
    keys = ("answers", "asks_author", "asks_name")
    items = [dict(r, **{k: current[r["id"]][k] for k in keys if r.get("id") in current and k in current[r["id"]]})
             for r in result["rows"]]
    rows = score_rows(items, [r["base_answer"] for r in items], [r["tuned_answer"] for r in items], result["names"])
    for row, old in zip(rows, result["rows"]):
        row.update({k: old[k] for k in ("kl_tokens", "kl", "kl_reverse") if k in old})
    return dict(result, **summarize(rows, result.get("split", "test")), rows=rows)


def identity_budget(tokenizer, names: dict) -> int:
    """New tokens for the tuned side's identity answers: MAX_NEW_TOKENS plus the tokens of the longer name + maker.

    An identity answer must be able to hold the name and the maker: the seed's long Chinese maker
    (齐鲁工业大学(山东省科学院)…研究组) is 78 tokens for SmolLM2's tokenizer and never fit in 48 new tokens. A chat
    answer is not cut there either (the Chat tab's default is 256 new tokens)."""
    longest = max(len(tokenizer(f"{names[f'name_{lang}']} {names[f'author_{lang}']}", add_special_tokens=False)["input_ids"])
                  for lang in ("en", "zh"))
    return MAX_NEW_TOKENS + longest


def same_answer(base: str, tuned: str) -> bool:
    """Whether ``tuned`` says what ``base`` said: equal, or (a longer budget) ``base`` cut short is where ``tuned`` starts
    (a cut can end inside a character, decoded as U+FFFD)."""
    return tuned == base or tuned.startswith(base.rstrip("\ufffd").rstrip())


def _tuned_answers(chat, convs: list[list[dict]], is_identity: list[bool], budget: int,
                   asked: list[bool]) -> list[str | None]:
    """The tuned side's answers in input order (None where not ``asked``): identity questions with ``budget`` new
    tokens, the rest MAX_NEW_TOKENS."""
    out: list = [None] * len(convs)
    for flag, limit, size in ((False, MAX_NEW_TOKENS, BATCH_SIZE), (True, budget, IDENTITY_BATCH_SIZE)):
        idx = [i for i, f in enumerate(is_identity) if f == flag and asked[i]]
        if idx:
            answers = chat.generate([convs[i] for i in idx], use_adapter=True, max_new_tokens=limit, batch_size=size)
            for i, a in zip(idx, answers):
                out[i] = a
    return out


@contextlib.contextmanager
def _merged(chat):
    """A LoRA adapter merged into the weights while the tuned side generates. Unmerged, each of the ~200 LoRA layers of
    the default model adds its own small steps to every decoding step: the tuned side took 3-4x the base's time here.
    Merged, it runs at the base's speed with the same weights up to float rounding (B = 0 merges to the very same ones)."""
    model = chat.model if chat.has_adapter and not chat.tuned_separate else None
    merge = model is not None and hasattr(model, "merge_adapter")
    if merge:
        try:
            model.merge_adapter()
        except (ValueError, NotImplementedError, RuntimeError):  # a layer type PEFT cannot merge: generate unmerged
            merge = False
    try:
        yield
    finally:
        if merge:
            model.unmerge_adapter()


def _base_answers(chat, convs: list[list[dict]], log) -> tuple[list[str], dict]:
    """The base's answers, cached per model, template, questions and budget (they never change)."""
    from studio.engine.generate import generation_dtype
    from studio.engine.models import model_fingerprint

    key = json.dumps([model_fingerprint(chat.model_name), chat.tokenizer.chat_template, convs, MAX_NEW_TOKENS,
                      generation_dtype()], ensure_ascii=False)
    cache = studio_home() / "cache" / f"probe-base-{hashlib.sha256(key.encode()).hexdigest()[:16]}.json"
    t = time.time()
    if cache.is_file():
        return json.loads(cache.read_text(encoding="utf-8")), {"base_s": round(time.time() - t, 1), "base_cached": True}
    log(f"probe: the base model answers {len(convs)} questions once (cached for later runs)")
    base = chat.generate(convs, use_adapter=False, max_new_tokens=MAX_NEW_TOKENS, batch_size=BATCH_SIZE)
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps(base, ensure_ascii=False), encoding="utf-8")
    return base, {"base_s": round(time.time() - t, 1), "base_cached": False}


# ----------------------------------------------------------------------------------------------------------------------------
# Reading probe.json (pure: the UI reads it without importing torch)


def load_probe(run_dir: str | Path) -> dict | None:
    """probe.json of a run (None until the probe has run)."""
    path = Path(run_dir) / PROBE_FILE
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def change(row: dict) -> str:
    """'lost' (right before, wrong after), 'gained' (the reverse) or ''."""
    if row["tuned_ok"] is None or row["base_ok"] == row["tuned_ok"]:
        return ""
    return "lost" if row["base_ok"] else "gained"


def _order(row: dict) -> int:
    """Lost general answers first, then identity answers the tuned model misses, then the rest."""
    if row["kind"] == "general" and change(row) == "lost":
        return 0
    if row["kind"] == "identity" and not row["tuned_ok"]:
        return 1
    return 2 if row["kind"] == "identity" else 3


def probe_table(result: dict, view: str = "all", not_asked: str = NOT_ASKED) -> list[dict]:
    """Rows for display, marks as ✓/✗, problems first. ``view``: ``all``, ``flipped`` (answers whose mark changed),
    ``lost`` (general answers right before and wrong after), ``identity`` or ``general``; ``not_asked``: the text in
    place of a tuned answer that was not asked (the UI's language)."""
    mark = lambda ok: "–" if ok is None else "✓" if ok else "✗"  # noqa: E731
    keep = {"all": lambda r: True, "flipped": lambda r: change(r) != "", "lost": lambda r: change(r) == "lost",
            "identity": lambda r: r["kind"] == "identity", "general": lambda r: r["kind"] == "general"}[view]
    rows = sorted((r for r in result.get("rows", []) if keep(r)), key=_order)
    return [{"kind": r["kind"], "lang": r["lang"], "where": r.get("setting") or r.get("split") or "",
             "change": {"lost": "✓→✗", "gained": "✗→✓", "": ""}[change(r)], "question": r["question"],
             "base": f"{mark(r['base_ok'])} {r['base_answer']}",
             "tuned": f"{mark(r['tuned_ok'])} {not_asked if r['tuned_answer'] is None else r['tuned_answer']}"}
            for r in rows]


def format_summary(result: dict) -> str:
    """One line: identity per language with the weakest setting, retention kept/base-right of the reported split, KL."""
    pct = lambda v: "-" if v is None else f"{100 * v:.0f}%"  # noqa: E731
    ident, ret, kl = result["identity"], result["retention"], result.get("kl") or {}
    langs = ", ".join(f"{lang} {pct(v['base'])} -> {pct(v['tuned'])}"
                      + (f" (weakest: {v['weakest']} {pct(v['min'])})" if v.get("weakest") else "")
                      for lang, v in ident["per_lang"].items())
    split = result.get("split", ret.get("split", ""))
    kl_text = f"; KL {kl['kl']:.4f} nats/token" if kl.get("kl") is not None else ""
    return (f"probe: identity {pct(ident['base'])} -> {pct(ident['tuned'])} ({langs}); "
            f"retention{f' ({split})' if split else ''} {pct(ret['score'])} ({ret['kept']}/{ret['base_right']} general "
            f"answers the base got right; {ret.get('identity_leaks', 0)} general answers slipped into the identity)"
            + kl_text)
