"""Self-cognition data: teach a model its new name and maker without making it forget what it knew.

``build_datasets(cfg, run_dir)`` is the runner's hook (called before data loading when ``identity.name_en`` is set). It
writes two ordinary, editable alpaca JSONL datasets into the run folder and returns their specs:

- ``identity.jsonl``: the shipped question/answer templates (``assets/identity/identity_{en,zh}.jsonl``, 100+ per language)
  with ``{{NAME}}`` / ``{{AUTHOR}}`` filled in; Chinese rows get the Chinese name and author;
- ``replay.jsonl``: general rows mixed in so the model keeps its behaviour. Where ``data.datasets`` is empty they are the
  base model's own greedy answers to ``assets/general/replay_prompts.json`` (generated once per model, cached under
  ``$STUDIO_HOME/cache``); where the user gave datasets, those are the general data and no replay is generated.

The default system prompt (issue: SmolLM's template injects "You are a helpful AI assistant named SmolLM, trained by
Hugging Face" when a conversation has none): by default (``identity.system_prompt`` empty) the template is kept and the
identity rows are trained under that very prompt, so the model learns to answer with its new identity over it. Measured on
the default model (benchmarks/self_cognition.py): any change of the default prompt alone flips 2-3 of the ~20 general
answers the base gets right, and a run shipping a prompt that names the new identity kept fewer general answers (74%) than
the same run keeping the prompt (83%), at equal identity scores. ``identity.system_prompt: auto`` (or a text) instead
writes ``chat_template.jinja`` with that default prompt into the run folder and sets it as ``model.chat_template``; the
trainer saves it with the adapter, so ``studio chat`` and the Chat tab use it, and half the identity rows keep the old
prompt so the identity holds under both.

Try it: ``python -c "from studio.engine.selfcog.identity import preview; print(preview('小新', 'Nova', '新星实验室', 'Nova Labs')[:3])"``
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from pathlib import Path

from studio.engine.selfcog import variety
from studio.paths import assets_dir, studio_home

IDENTITY_FILE = "identity.jsonl"
REPLAY_FILE = "replay.jsonl"
TEMPLATE_FILE = "chat_template.jinja"
LANGS = ("en", "zh")
NAME, AUTHOR = "{{NAME}}", "{{AUTHOR}}"
REPLAY_MAX_NEW_TOKENS = 64
REPLAY_MAX_SENTENCES = 2
# Share of identity rows that keep the base template's own default system prompt (e.g. "You are ... SmolLM"): the model
# then learns to answer with its new identity even under that prompt, not only under the one shipped with the adapter.
OLD_SYSTEM_SHARE = 0.5
AUTO_SYSTEM_PROMPT = "You are {both_names}, a helpful AI assistant developed by {both_authors}."
_CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")


# ----------------------------------------------------------------------------------------------------------------------------
# Templates and placeholders


def load_identity_templates(langs: tuple[str, ...] = LANGS) -> list[dict]:
    """The shipped identity rows (alpaca: instruction/input/output, plus kind and lang), placeholders still in."""
    rows = []
    for lang in langs:
        path = assets_dir() / "identity" / f"identity_{lang}.jsonl"
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                rows.append(dict(json.loads(line), lang=lang))
    return rows


def names_from(name_zh: str, name_en: str, author_zh: str, author_en: str) -> dict:
    """The four identity fields with fallbacks (an empty Chinese field takes the English one and back)."""
    name_en, name_zh = name_en.strip() or name_zh.strip(), name_zh.strip() or name_en.strip()
    author_en, author_zh = author_en.strip() or author_zh.strip(), author_zh.strip() or author_en.strip()
    if not name_en:
        raise ValueError("identity: the model's new name is empty (set identity.name_en and/or identity.name_zh)")
    if not author_en:
        raise ValueError("identity: who made the model is empty (set identity.author_en and/or identity.author_zh)")
    for value in (name_en, name_zh, author_en, author_zh):
        if "{" in value or "}" in value:
            raise ValueError(f"identity: {value!r}: names cannot contain braces")
    return {"name_zh": name_zh, "name_en": name_en, "author_zh": author_zh, "author_en": author_en}


def row_lang(row: dict) -> str:
    return row.get("lang") or ("zh" if _CJK.search(row.get("instruction", "")) else "en")


def fill_placeholders(rows: list[dict], name_zh: str, name_en: str, author_zh: str, author_en: str) -> list[dict]:
    """Replace ``{{NAME}}``/``{{AUTHOR}}`` in every text field; Chinese rows get the Chinese names."""
    names = names_from(name_zh, name_en, author_zh, author_en)
    out = []
    for row in rows:
        lang = row_lang(row)
        name, author = names[f"name_{lang}"], names[f"author_{lang}"]
        filled = {k: v.replace(NAME, name).replace(AUTHOR, author) if isinstance(v, str) else v for k, v in row.items()}
        filled["lang"] = lang
        out.append(filled)
    return out


def preview(name_zh: str, name_en: str, author_zh: str, author_en: str) -> list[dict]:
    """The filled identity rows (instruction, output, lang, kind) as the Data tab shows them."""
    return [{k: r[k] for k in ("instruction", "output", "lang", "kind")}
            for r in fill_placeholders(load_identity_templates(), name_zh, name_en, author_zh, author_en)]


def save_identity_dataset(path: str | Path, name_zh: str, name_en: str, author_zh: str, author_en: str) -> Path:
    """Write the filled rows as an alpaca JSONL file the user can edit and train on like any dataset."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_jsonl(fill_placeholders(load_identity_templates(), name_zh, name_en, author_zh, author_en), path)


# ----------------------------------------------------------------------------------------------------------------------------
# Mixing


def mix(identity_rows: list[dict], general_rows: list[dict], ratio: float | None = None, count: int | None = None,
        seed: int = 42) -> list[dict]:
    """Identity rows plus general rows, shuffled together.

    ``count``: how many general rows; ``ratio``: general rows per identity row (``count`` wins when both are given).
    Fewer general rows than asked for are repeated (each row once before any row twice), so the balance holds.
    """
    if count is None:
        count = round(len(identity_rows) * ratio) if ratio is not None else len(general_rows)
    if count < 0:
        raise ValueError(f"mix: count={count} must be >= 0")
    rng = random.Random(seed)
    general = []
    if general_rows:
        while len(general) < count:
            batch = list(general_rows)
            rng.shuffle(batch)
            general += batch[: count - len(general)]
    mixed = list(identity_rows) + general
    rng.shuffle(mixed)
    return mixed


def sample_per_lang(rows: list[dict], n: int, seed: int = 42) -> list[dict]:
    """``n`` rows, split evenly across the languages present; within a language every row once before any twice."""
    langs = sorted({row_lang(r) for r in rows})
    out = []
    for i, lang in enumerate(langs):
        want = n // len(langs) + (1 if i < n % len(langs) else 0)
        out += mix([], [r for r in rows if row_lang(r) == lang], count=want, seed=seed + i)
    return out


# ----------------------------------------------------------------------------------------------------------------------------
# Replay from the base model


def load_replay_prompts() -> list[dict]:
    data = json.loads((assets_dir() / "general" / "replay_prompts.json").read_text(encoding="utf-8"))
    return [{"prompt": p, "lang": lang} for lang in LANGS for p in data[lang]]


def replay_cache_path(model_path: str, max_new_tokens: int, chat_template: str = "", cache_dir: Path | None = None) -> Path:
    """One cache file per model (weights), template and answer budget; it holds an answer per prompt ever asked."""
    from studio.engine.generate import generation_dtype
    from studio.engine.models import model_fingerprint

    key = json.dumps([model_fingerprint(model_path), max_new_tokens, chat_template, generation_dtype()], ensure_ascii=False)
    digest = hashlib.sha256(key.encode("utf-8")).hexdigest()[:16]
    return Path(cache_dir or studio_home() / "cache") / f"replay-{Path(model_path).name}-{digest}.jsonl"


def build_replay(model_name: str, prompts: list[dict] | None = None, cache_dir: Path | None = None,
                 max_new_tokens: int = REPLAY_MAX_NEW_TOKENS, chat_template: str = "", log=print) -> list[dict]:
    """The base model's own answers to general prompts, as alpaca rows; each prompt is answered once, then cached.

    Answers are greedy under the model's default template. Rows that teach nothing good are dropped: broken text,
    loops, echoes of the prompt, and answers claiming the base identity (they would pull the model back to it); an
    answer keeps at most its first REPLAY_MAX_SENTENCES sentences. The raw answers are cached, so a better filter or
    new prompts need no regeneration of the old ones.
    """
    from studio.engine.models import resolve_model

    prompts = prompts if prompts is not None else load_replay_prompts()
    cache = replay_cache_path(resolve_model(model_name), max_new_tokens, chat_template, cache_dir)
    cached = {}
    if cache.is_file():
        for line in cache.read_text(encoding="utf-8").splitlines():
            if line.strip():
                r = json.loads(line)
                cached[r["prompt"]] = r
    missing = [p for p in prompts if p["prompt"] not in cached]
    if missing:
        import time

        start = time.time()
        log(f"replay: the base model answers {len(missing)} general prompts once (cached for later runs)")
        answers = base_answers(model_name, chat_template, [[{"role": "user", "content": p["prompt"]}] for p in missing],
                               max_new_tokens)
        new = [dict(p, answer=a, finished=f) for p, (a, f) in zip(missing, answers)]
        cache.parent.mkdir(parents=True, exist_ok=True)
        with open(cache, "a", encoding="utf-8") as fh:
            fh.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in new))
        cached.update((r["prompt"], r) for r in new)
        log(f"replay: {len(new)} answers generated in {time.time() - start:.0f} s -> {cache}")
    rows = []
    for p in prompts:
        r = cached[p["prompt"]]
        text = clean_replay_answer(r["answer"], r["finished"], r["prompt"])
        if text:
            rows.append({"instruction": r["prompt"], "input": "", "output": text, "lang": p["lang"], "kind": "replay"})
    log(f"replay: kept {len(rows)} of {len(prompts)} base-model answers "
        f"({sum(r['lang'] == 'zh' for r in rows)} to Chinese prompts)")
    return rows


def base_answers(model_name: str, chat_template: str, conversations: list[list[dict]], max_new_tokens: int,
                 batch_size: int = 96) -> list[tuple[str, bool]]:
    """Greedy ``(answer, finished)`` pairs from the base model, in input order. Prompts of similar length share a batch;
    one big batch is cheap on CPU, where decoding is bound by reading the weights once per step. (The chat engine answers
    the probes; replay needs to know which answers ran out of tokens, so it decodes here.)"""
    import torch

    from studio.engine.models import load_causal_lm, load_tokenizer

    tok = load_tokenizer(model_name, chat_template)
    tok.padding_side = "left"
    model = load_causal_lm(model_name).eval()
    prompts = [tok.apply_chat_template(c, tokenize=False, add_generation_prompt=True) for c in conversations]
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    eos = sorted({tok.eos_token_id, tok.convert_tokens_to_ids("<|im_end|>")} - {None, tok.unk_token_id})
    results: list = [None] * len(prompts)
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            idx = order[start: start + batch_size]
            enc = tok([prompts[i] for i in idx], return_tensors="pt", padding=True, add_special_tokens=False)
            out = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False, eos_token_id=eos,
                                 pad_token_id=tok.pad_token_id)
            for row, i in enumerate(idx):
                new = out[row, enc["input_ids"].shape[1]:].tolist()
                results[i] = (tok.decode(new, skip_special_tokens=True).strip(), any(t in eos for t in new))
    return results


_OLD_IDENTITY = re.compile(r"smol\s*lm|hugging\s*face", re.I)
_SENTENCE_END = re.compile(r"[.!?。！？](?=\s|$)|[。！？]")


def clean_replay_answer(answer: str, finished: bool, prompt: str = "") -> str:
    """The answer fit for replay training, or '' to drop it."""
    text = answer.strip()
    if prompt and text.startswith(prompt.strip()):  # the base echoing the question back teaches nothing
        return ""
    ends = [m.end() for m in _SENTENCE_END.finditer(text)]
    if len(ends) > REPLAY_MAX_SENTENCES:  # the opening carries the behaviour; the rest costs training time
        text = text[: ends[REPLAY_MAX_SENTENCES - 1]].strip()
    elif not finished:  # cut by the token budget: keep whole sentences only
        text = text[: ends[-1]].strip() if ends else ""
    if len(text) < 2 or "\ufffd" in text or _OLD_IDENTITY.search(text):
        return ""
    if _looping(text):
        return ""
    return text


def _looping(text: str, n: int = 8) -> bool:
    """True when some n-character chunk repeats 3+ times (greedy decoding stuck in a loop)."""
    if len(text) < 3 * n:
        return False
    counts: dict[str, int] = {}
    for i in range(0, len(text) - n + 1, 2):
        chunk = text[i : i + n]
        counts[chunk] = counts.get(chunk, 0) + 1
        if counts[chunk] >= 3 and chunk.strip():
            return True
    return False


# ----------------------------------------------------------------------------------------------------------------------------
# Default system prompt


def identity_system_prompt(names: dict) -> str:
    both_names = names["name_en"] if names["name_zh"] == names["name_en"] else f"{names['name_en']} ({names['name_zh']})"
    both_authors = (names["author_en"] if names["author_zh"] == names["author_en"]
                    else f"{names['author_en']} ({names['author_zh']})")
    return AUTO_SYSTEM_PROMPT.format(both_names=both_names, both_authors=both_authors, **names)


def with_default_system(template: str, system: str) -> str:
    """``template`` changed so that a conversation without a system message gets ``system`` as its system message.

    A prefix inserts the message before the template runs, so the template's own default (if any) never fires; the
    text sits in a ``{% set %}`` block, so names need no escaping.
    """
    if "{%" in system or "{{" in system:
        raise ValueError("the system prompt cannot contain Jinja markers")
    prefix = ("{%- set _identity_system -%}" + system + "{%- endset -%}"
              "{%- if not messages or messages[0]['role'] != 'system' -%}"
              "{%- set messages = [{'role': 'system', 'content': _identity_system}] + messages -%}"
              "{%- endif -%}")
    return prefix + template


def default_system_of(tokenizer) -> str:
    """The system text the template injects when a conversation has none ('' when it injects nothing)."""
    marker = "\x00SYSTEM\x00"
    user = [{"role": "user", "content": "\x00USER\x00"}]
    try:
        with_sys = tokenizer.apply_chat_template([{"role": "system", "content": marker}] + user, tokenize=False)
        without = tokenizer.apply_chat_template(user, tokenize=False)
    except Exception:  # a template without system support: it injects nothing we could replace
        return ""
    before, _, after = with_sys.partition(marker)
    if without.startswith(before) and without.endswith(after) and len(without) > len(before) + len(after):
        return without[len(before): len(without) - len(after)]
    return ""


# ----------------------------------------------------------------------------------------------------------------------------
# The runner's hook and the one-click config


def self_cognition_config(name_zh: str, name_en: str, author_zh: str, author_en: str, overrides: dict | None = None):
    """presets/self_cognition.yaml with the four identity fields (and any other overrides), validated: ready to submit."""
    from studio import config as C
    from studio.paths import presets_dir

    names = names_from(name_zh, name_en, author_zh, author_en)  # raises ValueError with a message for the UI
    values = {f"identity.{k}": v for k, v in names.items()}
    values.update(overrides or {})
    return C.check(C.load(presets_dir() / "self_cognition.yaml", values))



def build_datasets(cfg, run_dir: Path, log=print) -> list[str]:
    """Write identity.jsonl (+ replay.jsonl) into ``run_dir``; returns the dataset specs to add to training.

    With ``identity.system_prompt`` set, also writes chat_template.jinja and points ``cfg.model.chat_template`` at it, so
    training renders with it and the adapter ships with it.
    """
    from studio.engine.models import load_tokenizer

    ic = cfg.identity
    names = names_from(ic.name_zh, ic.name_en, ic.author_zh, ic.author_en)
    run_dir = Path(run_dir)
    base_template = cfg.model.chat_template
    tok = load_tokenizer(cfg.model.name_or_path, base_template, cfg.model.trust_remote_code)
    old_system = default_system_of(tok)
    rows = fill_placeholders(load_identity_templates(), **{k: names[k] for k in names})
    if ic.samples:
        rows = sample_per_lang(rows, ic.samples, cfg.training.seed)
    if ic.system_prompt.strip():
        system = identity_system_prompt(names) if ic.system_prompt.strip() == "auto" else ic.system_prompt.strip()
        template_path = run_dir / TEMPLATE_FILE
        template_path.write_text(with_default_system(tok.chat_template, system), encoding="utf-8")
        cfg.model.chat_template = str(template_path)
        log(f"identity: default system prompt -> {system!r} (was {old_system!r}); template {template_path}")
        rows = with_old_system(rows, old_system, OLD_SYSTEM_SHARE, cfg.training.seed)
    else:
        log(f"identity: the template's default system prompt stays {old_system!r}; training overrides it")
    general: list[dict] = []
    if cfg.data.datasets:
        log(f"identity: general data = data.datasets ({len(cfg.data.datasets)} given); no replay generated")
    elif ic.replay_samples > 0:
        replay = build_replay(cfg.model.name_or_path, chat_template=base_template, log=log)
        # balanced languages: with few general rows in a language, its questions drift into the identity answer
        general = sample_per_lang(replay, ic.replay_samples, cfg.training.seed)
        log(f"identity: {len(general)} replay rows (from {len(replay)} distinct base answers)")
    seed = cfg.training.seed
    rows = variety.with_system_prompts(variety.as_second_turns(rows, general, ic.second_turn, seed), ic.system_variety, seed)
    general = variety.with_system_prompts(general, ic.system_variety, seed + 7)
    specs = [str(write_jsonl(rows, run_dir / IDENTITY_FILE))]
    log(f"identity: {len(rows)} rows ({sum(r['lang'] == 'zh' for r in rows)} Chinese; "
        f"{sum(bool(r.get('history')) for r in rows)} second turns, {sum(bool(r.get('system')) for r in rows)} with a "
        f"system prompt) -> {specs[0]}")
    if general:
        specs.append(str(write_jsonl(general, run_dir / REPLAY_FILE)))
    return specs


def with_old_system(rows: list[dict], old_system: str, share: float, seed: int) -> list[dict]:
    """Give ``share`` of the rows (both languages alike) an explicit ``system`` field with the base's old default prompt."""
    if not old_system or share <= 0:
        return rows
    rng = random.Random(seed)
    out = []
    for row in rows:
        row = dict(row)
        if rng.random() < share:
            row["system"] = old_system
        out.append(row)
    return out


def write_jsonl(rows: list[dict], path: Path) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path
