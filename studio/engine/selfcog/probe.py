"""Before/after proof for self-cognition runs: ask the base and the tuned model the same questions, score, write probe.json.

- identity probe: held-out questions (``assets/identity/probe_identity.json``, none of them a training row, English and
  Chinese). An answer is right when it names the new model (and its maker when the question asks who made it) and does
  not claim the old identity (SmolLM / Hugging Face, unless the question itself names them).
- retention probe: general questions with expected words (``assets/general/probe_general.json``). Retention = share of
  the questions the base answers right that the tuned model still answers right; an answer that drifts into the new
  identity ("Name a primary color." -> "I am Nova ...") is wrong.

Each side answers the way a user would see it by default: the base with its own chat template, the tuned model with the
template saved in its adapter folder. Greedy decoding; the base answers are cached (they do not change between runs).
``run_probes(cfg, run_dir)`` is the runner's hook (after training when ``identity.probe`` is on).
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from pathlib import Path

from studio.paths import assets_dir, studio_home

PROBE_FILE = "probe.json"
MAX_NEW_TOKENS = 48
# Decoding a 135M model on CPU is bound by reading the weights once per step: one batch reads them once for all questions.
BATCH_SIZE = 96
OLD_IDENTITY = ("SmolLM", "Hugging Face", "HuggingFace")


# ----------------------------------------------------------------------------------------------------------------------------
# Scoring (pure)


def mentions(text: str, word: str) -> bool:
    """Case-insensitive; ASCII words must stand alone ('Nova' is not in 'Novartis'), CJK words match anywhere."""
    word = word.strip()
    if not word:
        return False
    if word.isascii():
        return re.search(r"(?<![A-Za-z0-9])" + re.escape(word) + r"(?![A-Za-z0-9])", text, re.I) is not None
    return word.lower() in text.lower()


def score_identity(answer: str, lang: str, names: dict, asked_author: bool, question: str = "",
                   old_identity: tuple[str, ...] = OLD_IDENTITY) -> bool:
    """Right when the answer names the new model (either language's name), the maker too when asked, and no old identity.

    ``names``: name_zh, name_en, author_zh, author_en. ``lang`` is recorded by callers; both languages' names count,
    since a Chinese answer naming the English name still knows who it is.
    """
    has_name = any(mentions(answer, names.get(k, "")) for k in ("name_zh", "name_en"))
    has_author = any(mentions(answer, names.get(k, "")) for k in ("author_zh", "author_en"))
    old = any(mentions(answer, w) and not mentions(question, w) for w in old_identity)
    return has_name and (has_author or not asked_author) and not old


def score_general(answer: str, expected_keywords: list[str], forbidden: tuple[str, ...] = ()) -> bool:
    """Right when the answer contains one of the expected words and none of the forbidden ones (the new identity)."""
    return any(mentions(answer, k) for k in expected_keywords) and not any(mentions(answer, f) for f in forbidden if f)


def share(flags: list[bool]) -> float | None:
    return round(sum(flags) / len(flags), 4) if flags else None


def summarize(rows: list[dict]) -> dict:
    """Identity and retention scores (overall and per language) from scored rows."""
    ident = [r for r in rows if r["kind"] == "identity"]
    general = [r for r in rows if r["kind"] == "general"]
    per_lang, ret_lang = {}, {}
    for lang in sorted({r["lang"] for r in rows}):
        li = [r for r in ident if r["lang"] == lang]
        per_lang[lang] = {"base": share([r["base_ok"] for r in li]), "tuned": share([r["tuned_ok"] for r in li]), "n": len(li)}
        known = [r for r in general if r["lang"] == lang and r["base_ok"]]
        ret_lang[lang] = {"score": share([r["tuned_ok"] for r in known]), "base_right": len(known),
                          "kept": sum(r["tuned_ok"] for r in known), "n": sum(r["lang"] == lang for r in general)}
    known = [r for r in general if r["base_ok"]]
    return {
        "identity": {"base": share([r["base_ok"] for r in ident]), "tuned": share([r["tuned_ok"] for r in ident]),
                     "per_lang": per_lang, "n": len(ident)},
        "retention": {"score": share([r["tuned_ok"] for r in known]), "base_right": len(known),
                      "kept": sum(r["tuned_ok"] for r in known), "tuned_right": sum(r["tuned_ok"] for r in general),
                      "identity_leaks": sum(bool(r.get("identity_leak")) for r in general), "n": len(general),
                      "per_lang": ret_lang},
    }


# ----------------------------------------------------------------------------------------------------------------------------
# Questions


def load_probe_questions() -> list[dict]:
    """Identity then general questions: {question, lang, kind, asks_author | expected}."""
    ident = json.loads((assets_dir() / "identity" / "probe_identity.json").read_text(encoding="utf-8"))
    general = json.loads((assets_dir() / "general" / "probe_general.json").read_text(encoding="utf-8"))
    out = []
    for lang in ("en", "zh"):
        out += [{"question": q["question"], "lang": lang, "kind": "identity", "asks_author": bool(q["asks_author"])}
                for q in ident.get(lang, [])]
    for lang in ("en", "zh"):
        out += [{"question": q["question"], "lang": lang, "kind": "general", "expected": list(q["expected"])}
                for q in general.get(lang, [])]
    return out


# ----------------------------------------------------------------------------------------------------------------------------
# The runner's hook (generation goes through the chat engine, studio.engine.generate, so the probe sees what a user sees)


def run_probes(cfg, run_dir: Path, log=print, questions: list[dict] | None = None) -> dict:
    """Ask base and tuned the probe questions, score, write ``run_dir/probe.json``; returns the scores (no rows)."""
    from studio.engine.selfcog.identity import names_from

    run_dir = Path(run_dir)
    start = time.time()
    ic = cfg.identity
    names = names_from(ic.name_zh, ic.name_en, ic.author_zh, ic.author_en)
    questions = questions if questions is not None else load_probe_questions()
    convs = [[{"role": "user", "content": q["question"]}] for q in questions]
    base_answers, tuned_answers = _answers(cfg, run_dir, convs, log)
    forbidden = tuple(dict.fromkeys(names.values()))
    rows = []
    for q, base, tuned in zip(questions, base_answers, tuned_answers):
        if q["kind"] == "identity":
            ok = [score_identity(a, q["lang"], names, q["asks_author"], q["question"]) for a in (base, tuned)]
        else:
            ok = [score_general(a, q["expected"], forbidden) for a in (base, tuned)]
        rows.append({"question": q["question"], "lang": q["lang"], "kind": q["kind"], "base_answer": base,
                     "tuned_answer": tuned, "base_ok": ok[0], "tuned_ok": ok[1]})
        if q["kind"] == "general":  # the identity sentence given to a general question: the failure to watch for
            rows[-1]["identity_leak"] = any(mentions(tuned, f) for f in forbidden)
    result = summarize(rows)
    result.update(names=names, seconds=round(time.time() - start, 1), max_new_tokens=MAX_NEW_TOKENS, rows=rows)
    (run_dir / PROBE_FILE).write_text(json.dumps(result, indent=2, ensure_ascii=False), encoding="utf-8")
    log(format_summary(result) + f" ({result['seconds']} s) -> {run_dir / PROBE_FILE}")
    return {k: v for k, v in result.items() if k != "rows"}


def load_probe(run_dir: str | Path) -> dict | None:
    """probe.json of a run (None until the probe has run); pure: the UI reads it without importing torch."""
    path = Path(run_dir) / PROBE_FILE
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def probe_table(result: dict) -> list[dict]:
    """The before/after rows for display: identity questions first, then general ones, marks as ✓/✗."""
    mark = lambda ok: "✓" if ok else "✗"  # noqa: E731
    rows = sorted(result.get("rows", []), key=lambda r: r["kind"] != "identity")
    return [{"kind": r["kind"], "lang": r["lang"], "question": r["question"], "base": f"{mark(r['base_ok'])} {r['base_answer']}",
             "tuned": f"{mark(r['tuned_ok'])} {r['tuned_answer']}"} for r in rows]


def format_summary(result: dict) -> str:
    pct = lambda v: "-" if v is None else f"{100 * v:.0f}%"  # noqa: E731
    ident, ret = result["identity"], result["retention"]
    langs = ", ".join(f"{lang} {pct(v['base'])} -> {pct(v['tuned'])}" for lang, v in ident["per_lang"].items())
    return (f"probe: identity {pct(ident['base'])} -> {pct(ident['tuned'])} ({langs}); "
            f"retention {pct(ret['score'])} ({ret['kept']}/{ret['base_right']} general answers the base got right; "
            f"{ret.get('identity_leaks', 0)} general answers slipped into the identity)")


def _answers(cfg, run_dir: Path, convs: list[list[dict]], log) -> tuple[list[str], list[str]]:
    """Base and tuned answers through the chat engine, exactly as the Chat tab and ``studio chat`` produce them (each side
    with its own template). The base answers are cached per model, template and questions: they never change."""
    from studio.engine.generate import ChatModel
    from studio.engine.generate import generation_dtype
    from studio.engine.models import model_fingerprint

    chat = ChatModel(cfg.model.name_or_path, adapter=run_dir, trust_remote_code=cfg.model.trust_remote_code)
    kw = {"max_new_tokens": MAX_NEW_TOKENS, "batch_size": BATCH_SIZE}
    key = json.dumps([model_fingerprint(chat.model_name), chat.tokenizer.chat_template, convs, MAX_NEW_TOKENS,
                      generation_dtype()], ensure_ascii=False)
    cache = studio_home() / "cache" / f"probe-base-{hashlib.sha256(key.encode()).hexdigest()[:16]}.json"
    if cache.is_file():
        base = json.loads(cache.read_text(encoding="utf-8"))
    else:
        log(f"probe: the base model answers {len(convs)} questions once (cached for later runs)")
        base = chat.generate(convs, use_adapter=False, **kw)
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_text(json.dumps(base, ensure_ascii=False), encoding="utf-8")
    return base, chat.generate(convs, use_adapter=True, **kw)
