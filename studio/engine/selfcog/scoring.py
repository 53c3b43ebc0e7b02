"""Scoring the probe's answers (pure functions, no model): does a text mention a word, which numbers does it hold, is a
general answer right, does an identity answer name the new model.

Rules, chosen so that an answer is marked by what it says rather than by how it is spelled:

- **Words** (``mentions``): text and word are NFKC-normalised and case-folded (full-width letters, ``CO₂`` -> ``co2``). A word
  in ASCII must appear as whole tokens (``Nova`` is not in ``Novartis``; ``R2-Lite`` matches ``r2 lite``); with
  ``plural=True`` its last token may take ``s``/``es``. A word with any other character (Chinese) matches as a substring
  once spaces and punctuation are dropped from both sides (``(山东省科学院)`` matches ``（山东省科学院）``).
- **Numbers** (``numbers_in``): digits (``1,000``, ``3.5``, ``24th``), English number words (``seven``, ``twenty-four``,
  ``one hundred and five``) and Chinese numerals (``七``, ``十二``, ``三百六十五``) all become values, so ``7``, ``seven``
  and ``七`` are one answer, and a ``7`` inside ``17`` is 17. A lone ``一`` counts only before a measure word (``一只``),
  not in ``一样``/``一下``; ``十分`` (very) is not ten, the 千 of ``千克``/``千米`` is a unit.
- **General answers** (``score_general``): right when a number answer's value is among the numbers the answer adds to the
  question (numbers the question itself holds do not count) and the answer adds at most ``MAX_NEW_NUMBERS`` distinct
  numbers (a list ``1, 2, 3, ...`` or a loop is not an answer); a word answer is right when mentioned. An answer that names
  the new identity is wrong (the identity leaking into a general answer), unless the question or an accepted answer holds
  that name too.
- **Identity answers** (``score_identity``): the new name (either language's), the maker too when the question asks for
  it, and no old identity (SmolLM, Hugging Face) unless the question named it. A question that asks only who made the
  model (``asks_name=False``: "Who is your creator?") is answered by the maker alone ("I was created by Harbor AI.").

Try it: ``python -c "from studio.engine.selfcog.scoring import numbers_in; print(numbers_in('一年有三百六十五天, 17 or seven'))"``
"""

from __future__ import annotations

import re
import unicodedata

OLD_IDENTITY = ("SmolLM", "Hugging Face", "HuggingFace")
# more distinct new numbers than this and a number answer is a list or a loop, not an answer ("5 on each foot, 10 in
# all" holds two; "1, 2, 3, 4, 5, ..." holds many)
MAX_NEW_NUMBERS = 3

_WORD = re.compile(r"[a-z0-9]+")
_KEEP = re.compile(r"[\W_]+", re.UNICODE)  # spaces and punctuation, dropped before a substring match

_UNITS = {w: i for i, w in enumerate("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
                                     "fifteen sixteen seventeen eighteen nineteen".split())}
_TENS = {w: 10 * i for i, w in enumerate("twenty thirty forty fifty sixty seventy eighty ninety".split(), start=2)}
_SCALES = {"hundred": 100, "thousand": 1000, "million": 1_000_000}
_CN_DIGITS = {"零": 0, "〇": 0, "一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8, "九": 9}
_CN_UNITS = {"十": 10, "百": 100, "千": 1000, "万": 10_000, "亿": 100_000_000}
# after a lone 一 these make it a count ("一只", "一年"); elsewhere 一 is mostly part of a word (一样, 一下, 一起, 统一)
_MEASURES = set("个只条根张本件位次天年月日周岁名颗棵匹头辆双副把块元角秒米克吨升层页首句种打")
_NUMBER = re.compile(
    r"(?P<digits>(?<![a-z0-9])(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?)"
    r"|(?P<cn>[零〇一二两三四五六七八九十百千万亿]+)"
    r"|(?P<word>[a-z]+)")


def normalize(text: str) -> str:
    """NFKC (full-width and sub/superscript forms to plain ones) and case-folded."""
    return unicodedata.normalize("NFKC", text or "").casefold()


def mentions(text: str, word: str, plural: bool = False) -> bool:
    """Whether ``text`` mentions ``word`` (rules in the module docstring)."""
    text, word = normalize(text), normalize(word).strip()
    if not word:
        return False
    if word.isascii():
        want, have = _WORD.findall(word), _WORD.findall(text)
        if not want:
            return word in text
        n = len(want)
        for i in range(len(have) - n + 1):
            if have[i:i + n - 1] == want[:-1] and (have[i + n - 1] == want[-1] or (
                    plural and have[i + n - 1] in (want[-1] + "s", want[-1] + "es"))):
                return True
        return False
    return _KEEP.sub("", word) in _KEEP.sub("", text)


# ----------------------------------------------------------------------------------------------------------------------------
# Numbers


def numbers_in(text: str) -> list[float]:
    """Every number ``text`` holds, in order, whatever its spelling (digits, English words, Chinese numerals)."""
    text = normalize(text)
    out: list[float] = []
    words: list[str] = []  # a run of English number words being read
    last_end = 0
    for m in _NUMBER.finditer(text):
        gap = text[last_end:m.start()]
        if words and (m.lastgroup != "word" or not re.fullmatch(r"[\s-]*", gap)):
            out += _english_value(words)
            words = []
        last_end = m.end()
        if m.lastgroup == "digits":
            out.append(float(m.group().replace(",", "")))
        elif m.lastgroup == "cn":
            value = _chinese_value(m.group(), text[m.end():m.end() + 2])
            if value is not None:
                out.append(value)
        elif m.group() in _UNITS or m.group() in _TENS or m.group() in _SCALES or (m.group() == "and" and words):
            words.append(m.group())
        elif words:
            out += _english_value(words)
            words = []
    if words:
        out += _english_value(words)
    return out


def _english_value(words: list[str]) -> list[float]:
    """A run of number words -> its values; "one two three" is three numbers, "twenty four" one, "and" joins."""
    out, total, current, prev = [], 0, 0, None
    while words and words[-1] == "and":
        words = words[:-1]
    for w in words:
        if w == "and":
            continue
        if w in _SCALES:
            if _SCALES[w] == 100:
                current = (current or 1) * 100
            else:
                total, current = total + (current or 1) * _SCALES[w], 0
            prev = "scale"
            continue
        is_tens = w in _TENS
        value = _TENS[w] if is_tens else _UNITS[w]
        if prev == "unit" or (prev == "tens" and (is_tens or value >= 10)):  # a new number starts ("one two", "twenty ten")
            out.append(float(total + current))
            total, current = 0, 0
        current += value
        prev = "tens" if is_tens else "unit"
    out.append(float(total + current))
    return out


def _chinese_value(run: str, after: str) -> float | None:
    """A run of Chinese numeral characters -> its value, or None when it is not a number in context."""
    if run.endswith("千") and after[:1] in ("克", "米", "瓦"):  # 千克, 千米: a unit, not a thousand ("一千克" is 1 kg)
        run, after = run[:-1], "千" + after
        if not run:
            return None
        if run == "一":
            return 1.0
    if run == "百" and after.startswith("分之"):  # 百分之二十: the 二十 is the number
        return None
    if run == "一" and (not after or after[0] not in _MEASURES):
        return None
    if run == "十" and after.startswith("分") and not after.startswith("分钟"):  # 十分 = very
        return None
    if not any(c in _CN_UNITS for c in run):  # 二〇二六, 三: digit by digit
        return float("".join(str(_CN_DIGITS[c]) for c in run))
    total, section, digit = 0, 0, None
    for c in run:
        if c in _CN_DIGITS:
            digit = _CN_DIGITS[c]
        elif _CN_UNITS[c] >= 10_000:
            total += (section + (digit or 0)) * _CN_UNITS[c]
            section, digit = 0, None
        else:
            section += (1 if digit is None else digit) * _CN_UNITS[c]
            digit = None
    return float(total + section + (digit or 0))


def as_number(text: str) -> float | None:
    """The value of an accepted answer that is just a number ("7", "seven", "七", "one hundred"), else None."""
    values = numbers_in(text)
    if len(values) != 1:
        return None
    rest = _NUMBER.sub(lambda m: "" if m.lastgroup != "word" or m.group() in _UNITS or m.group() in _TENS
                       or m.group() in _SCALES or m.group() == "and" else m.group(), normalize(text))
    return values[0] if not _KEEP.sub("", rest) else None


# ----------------------------------------------------------------------------------------------------------------------------
# Verdicts


def leaked(answer: str, names: tuple[str, ...] | list[str], question: str = "", accepted: list[str] = ()) -> bool:
    """The answer names the new identity where the question and its accepted answers do not."""
    return any(mentions(answer, n) and not mentions(question, n) and not any(mentions(a, n) for a in accepted)
               for n in names if n and n.strip())


def score_general(answer: str, accepted: list[str], question: str = "", forbidden: tuple[str, ...] = ()) -> bool:
    """Right when the answer holds an accepted answer (rules in the module docstring) and does not leak the identity."""
    if leaked(answer, forbidden, question, accepted):
        return False
    values = {v for v in (as_number(a) for a in accepted) if v is not None}
    if values:
        asked = set(numbers_in(question))
        new = list(dict.fromkeys(n for n in numbers_in(answer) if n not in asked))
        if len(new) <= MAX_NEW_NUMBERS and values & set(new):
            return True
    return any(mentions(answer, a, plural=True) for a in accepted if as_number(a) is None)


def score_identity(answer: str, names: dict, asks_author: bool, question: str = "",
                   old_identity: tuple[str, ...] = OLD_IDENTITY, asks_name: bool = True) -> bool:
    """Right when the answer names the new model (either language's name; not needed when ``asks_name`` is False, a
    question after the maker only), the maker too when asked, and no old identity.

    ``names``: name_zh, name_en, author_zh, author_en. Both languages' names count: a Chinese answer naming the English
    name still knows who it is.
    """
    has_name = any(mentions(answer, names.get(k, "")) for k in ("name_zh", "name_en"))
    has_author = any(mentions(answer, names.get(k, "")) for k in ("author_zh", "author_en"))
    old = any(mentions(answer, w) and not mentions(question, w) for w in old_identity)
    return (has_name or not asks_name) and (has_author or not asks_author) and not old
