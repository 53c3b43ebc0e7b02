"""The probe's questions (pure, no model): the general questions with accepted answers and their dev/test split, the
identity questions, the four settings an identity question is asked in, and the near-duplicate rule that keeps every
question set apart from the data the recipe trains on.

- ``assets/general/retention_questions.json``: general questions (English and Chinese; arithmetic, counting, units,
  geography, science, language, translation, common sense), each with an id, ``split`` (``dev``: for choosing a recipe;
  ``test``: only for reporting it) and accepted answers.
- ``assets/identity/probe_identity.json``: identity questions per language; ``asks_author`` when the maker is asked;
  ``split`` as above (a dev run chooses a recipe on other identity questions than the ones the test run reports).
- Settings (``SETTINGS``): ``none`` (no system message: the template's own default applies), ``default_system`` (that
  default given explicitly as a system message), ``user_system`` (a user's own plain system prompt), ``second_turn``
  (the question follows a first exchange on another topic).
- Near duplicates (``near_duplicate``): two questions are one when their normalised texts are equal (case, width,
  punctuation, spaces), when they are equal once every number is masked ("What is 7 times 8?" = "What is 6 times 9?"),
  or when the Jaccard index of their token sets (ASCII words, single CJK characters, numbers masked) is above 0.8.

Try it: ``python -c "from studio.engine.selfcog.questions import *; print(len(load_retention_questions('test')))"``
"""

from __future__ import annotations

import json
import re

from studio.engine.selfcog.scoring import normalize
from studio.paths import assets_dir

SPLITS = ("dev", "test")
# what a probe may be asked to report: a split, or ``both`` (asks dev and test, reports test: the two side by side)
PROBE_SPLITS = SPLITS + ("both",)
LANGS = ("en", "zh")
SETTINGS = ("none", "default_system", "user_system", "second_turn")
USER_SYSTEM = {"en": "You are a helpful assistant.", "zh": "你是一个乐于助人的助手。"}
# The first exchange of the second-turn setting: fixed text (the same for base and tuned), on topics no question asks.
OPENERS = {
    "en": [("Any tips for keeping a plant alive indoors?", "Water it when the soil feels dry and give it some light."),
           ("What's a good snack for the afternoon?", "An apple with a handful of nuts is a good choice."),
           ("Give me a word that rhymes with \"light\".", "\"Night\" rhymes with \"light\"."),
           ("How do I say thanks politely in an email?", "You could write: \"Thank you very much for your help.\"")],
    "zh": [("推荐一种适合放在室内的植物。", "绿萝很好养，放在有散射光的地方就行。"),
           ("下午吃什么零食比较好？", "一个苹果加一小把坚果就不错。"),
           ("给我一个和“光”押韵的字。", "“窗”和“光”押韵。"),
           ("写邮件时怎么礼貌地表示感谢？", "可以写：“非常感谢您的帮助。”")],
}
NEAR_JACCARD = 0.8

_CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")
_TOKEN = re.compile(r"\d+(?:[.,]\d+)*|[a-z]+|[\u3400-\u9fff\uf900-\ufaff]")
_NUMBER_WORDS = set("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
                    "seventeen eighteen nineteen twenty thirty forty fifty sixty seventy eighty ninety hundred thousand "
                    "million".split())
_CN_NUMERALS = set("零〇一二两三四五六七八九十百千万亿")


# ----------------------------------------------------------------------------------------------------------------------------
# Loading


def _check_split(split: str | None) -> None:
    if split is not None and split not in SPLITS:
        raise ValueError(f"split={split!r}: use one of {SPLITS}")


def load_retention_questions(split: str | None = None) -> list[dict]:
    """General questions ({id, lang, topic, split, question, answers}); ``split`` keeps only that split."""
    data = json.loads((assets_dir() / "general" / "retention_questions.json").read_text(encoding="utf-8"))
    _check_split(split)
    return [dict(q) for q in data["questions"] if split is None or q["split"] == split]


def load_identity_questions(split: str | None = None) -> list[dict]:
    """Identity questions ({id, lang, split, question, asks_author}), English then Chinese; ``split`` keeps only that
    split."""
    data = json.loads((assets_dir() / "identity" / "probe_identity.json").read_text(encoding="utf-8"))
    _check_split(split)
    return [dict(q, lang=lang, asks_author=bool(q["asks_author"])) for lang in LANGS for q in data.get(lang, [])
            if split is None or q["split"] == split]


def splits_asked(split: str) -> tuple[str, ...]:
    """The splits a probe for ``split`` asks: ``dev`` asks dev only (the test split stays unseen while a recipe is
    chosen), ``test`` asks test only (what is reported; the preset's probe, so the dev questions cost it no time),
    ``both`` asks both and reports test, so dev and test show side by side."""
    if split not in PROBE_SPLITS:
        raise ValueError(f"split={split!r}: use one of {PROBE_SPLITS}")
    return SPLITS if split == "both" else (split,)


def reported_split(split: str) -> str:
    """The split whose retention and KL a probe for ``split`` reports (``both`` reports test)."""
    return "test" if split == "both" else split


# ----------------------------------------------------------------------------------------------------------------------------
# Settings


def conversation(question: str, lang: str, setting: str, default_system: str = "", index: int = 0) -> list[dict] | None:
    """The messages that ask ``question`` in ``setting``; None for ``default_system`` when the template has no default.

    ``index`` picks the opener of the second-turn setting (questions rotate through them).
    """
    user = [{"role": "user", "content": question}]
    if setting == "none":
        return user
    if setting == "default_system":
        return [{"role": "system", "content": default_system}] + user if default_system else None
    if setting == "user_system":
        return [{"role": "system", "content": USER_SYSTEM[lang]}] + user
    if setting == "second_turn":
        first, reply = OPENERS[lang][index % len(OPENERS[lang])]
        return [{"role": "user", "content": first}, {"role": "assistant", "content": reply}] + user
    raise ValueError(f"setting={setting!r}: use one of {SETTINGS}")


# ----------------------------------------------------------------------------------------------------------------------------
# Near duplicates


def normalize_question(text: str) -> str:
    """Case, width, punctuation and spaces gone: 'What is 2+2?' and 'what is 2 + 2' are one text."""
    return re.sub(r"[\W_]+", "", normalize(text))


def question_tokens(text: str) -> list[str]:
    """ASCII words and single CJK characters, every number (digits, number words, Chinese numerals) masked as '#'."""
    out = []
    for tok in _TOKEN.findall(normalize(text)):
        out.append("#" if tok[0].isdigit() or tok in _NUMBER_WORDS or tok in _CN_NUMERALS else tok)
    return out


def near_duplicate(a: str, b: str, threshold: float = NEAR_JACCARD) -> bool:
    """The rule in the module docstring: equal texts, equal with numbers masked, or token-set Jaccard > ``threshold``."""
    if normalize_question(a) == normalize_question(b):
        return True
    ta, tb = question_tokens(a), question_tokens(b)
    if ta and ta == tb:
        return True
    sa, sb = set(ta), set(tb)
    return bool(sa and sb) and len(sa & sb) / len(sa | sb) > threshold


def duplicates(texts: list[str], others: list[str] | None = None, threshold: float = NEAR_JACCARD) -> list[tuple[str, str]]:
    """Pairs that are near duplicates: within ``texts`` when ``others`` is None, else between the two lists."""
    if others is None:
        return [(a, b) for i, a in enumerate(texts) for b in texts[i + 1:] if near_duplicate(a, b, threshold)]
    return [(a, b) for a in texts for b in others if near_duplicate(a, b, threshold)]


def is_chinese(text: str) -> bool:
    return bool(_CJK.search(text))
