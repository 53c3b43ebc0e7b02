"""The data doctor: what is wrong with a dataset before it is trained on, row by row.

    from studio.engine.data import doctor, view as ds
    report = doctor.examine(ds.open_dataset("train.jsonl"), eval_view=ds.open_dataset("eval.jsonl"), tokenizer=tok)
    report["flags"]["near_duplicate"]  # -> row indices; report["groups"] holds the duplicate groups

Flags (each lists its rows, 0-based like the Data tab's ``#``):

- ``exact_duplicate``: the same text after normalising (Unicode NFKC, case, white space, punctuation); the first row of
  each group is kept, the others are flagged;
- ``near_duplicate``: Jaccard similarity of the rows' shingle sets >= ``threshold`` (default 0.8), estimated with
  MinHash (``NUM_PERM`` multiply-shift hashes over 3-grams of words and CJK characters, hashed the same way in every
  process: the same data gives the same report) and banded LSH; the first row of each group is kept;
- ``in_eval``: rows whose text is also (exactly or nearly) in the eval dataset;
- ``empty_row``, ``empty_turn`` (a turn that is empty or only white space), ``roles`` (turns that do not alternate user /
  assistant, or a conversation that does not start with the user or end with the assistant), ``null_text`` (a turn that
  is literally nan / None / null), ``short_answer`` (under ``min_answer_chars``), ``echo`` (an answer that repeats its
  prompt), ``language`` (the row's language differs from a dataset that is >= 80 % one language), ``mixed_language``
  (between 20 % and 80 % Chinese characters), ``answer_language`` (the answer is in another language than its question),
  ``cut_answer`` (``cutoff_len`` ends inside an answer: needs a tokenizer; ``token_sample`` evenly spaced rows),
  ``invalid`` (training cannot read the row; the reason is in ``invalid_reasons``).

Everything but ``cut_answer`` reads every row. Pure Python + numpy; the tokenizer is passed in.
"""

from __future__ import annotations

import re
import time
import unicodedata
import zlib
from collections import defaultdict

from studio.engine.data.formats import DataError
from studio.engine.data.load import render_example, render_text, with_system
from studio.engine.data.view import DatasetView, normalize

NUM_PERM = 64  # MinHash hashes per row: the estimate's standard error is about 0.05 at Jaccard 0.8
BANDS = 16  # LSH bands of NUM_PERM / BANDS hashes: pairs at Jaccard 0.8 meet in a band with probability ~0.9999
MAX_SHINGLES = 512  # of a long document, its first 512 shingles decide (they say whether two documents are one)
NULL_TEXTS = {"nan", "none", "null"}
FLAGS = ("exact_duplicate", "near_duplicate", "in_eval", "empty_row", "empty_turn", "roles", "null_text", "short_answer",
         "echo", "language", "mixed_language", "answer_language", "cut_answer", "invalid")
FIXABLE = {"duplicates": ("exact_duplicate", "near_duplicate"), "empty": ("empty_row", "empty_turn")}
_WORD = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]|[^\W_]+", re.UNICODE)
_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_LATIN = re.compile(r"[A-Za-z]")


def examine(view: DatasetView, eval_view: DatasetView | None = None, tokenizer=None, cutoff_len: int = 1024,
            threshold: float = 0.8, min_answer_chars: int = 2, token_sample: int = 2000, train_on_prompt: bool = False,
            system: str = "") -> dict:
    """Every flag of every row (see the module docstring) and the duplicate groups; ``seconds`` says how long it took."""
    if not 0 < threshold <= 1:
        raise DataError(f"near-duplicate threshold {threshold}: must be > 0 and <= 1")
    start = time.perf_counter()
    flags: dict[str, list[int]] = {f: [] for f in FLAGS}
    reasons, texts, langs, convs = {}, [], [], {}
    for i, row in enumerate(view.iter_rows()):
        text = _row_checks(view, i, row, flags, reasons, convs, min_answer_chars, langs)
        texts.append(text)
    exact_groups = _exact_groups(texts)
    for group in exact_groups:
        flags["exact_duplicate"] += group[1:]
    signatures = minhash_all(texts)
    near_groups = _near_groups(signatures, threshold, skip={i for g in exact_groups for i in g[1:]})
    for group in near_groups:
        flags["near_duplicate"] += group[1:]
    if eval_view is not None:
        flags["in_eval"] = _shared_with(texts, signatures, [_text_of_row(eval_view, i, r) for i, r in
                                                            enumerate(eval_view.iter_rows())], threshold)
    shares = _language_flags(langs, flags)
    sampled = 0
    if tokenizer is not None:
        sampled = _cut_answers(convs, tokenizer, cutoff_len, token_sample, train_on_prompt, system, flags)
    flags = {k: sorted(set(v)) for k, v in flags.items()}
    flagged = set().union(*flags.values()) if flags else set()
    return {"rows": len(view), "format": view.format, "threshold": threshold, "num_perm": NUM_PERM,
            "min_answer_chars": min_answer_chars, "flags": flags, "counts": {k: len(v) for k, v in flags.items()},
            "flagged_rows": len(flagged), "groups": {"exact": exact_groups, "near": near_groups},
            "invalid_reasons": {i: reasons[i] for i in list(reasons)[:50]}, "language": shares,
            "token_rows": sampled, "cutoff_len": cutoff_len, "seconds": round(time.perf_counter() - start, 3)}


def rows_to_drop(report: dict, fix: str) -> list[int]:
    """The rows a one-click fix removes: ``duplicates`` (all but the first of each group) or ``empty`` (empty rows and
    rows with an empty turn)."""
    if fix not in FIXABLE:
        raise DataError(f"unknown fix {fix!r} (fixes: {', '.join(FIXABLE)})")
    return sorted({i for flag in FIXABLE[fix] for i in report["flags"].get(flag, [])})


# -- one row -------------------------------------------------------------------------------------------------------------


def normal_text(text: str) -> str:
    """What "the same text" means here: NFKC, case folded, punctuation dropped, white space collapsed."""
    text = unicodedata.normalize("NFKC", text).casefold()
    return " ".join(_WORD.findall(text))


def _row_checks(view, i, row, flags, reasons, convs, min_chars, langs) -> str:
    """Flag one row; returns its normalised text (for the duplicate checks)."""
    if not any(_flat(v).strip() for v in row.values()):
        flags["empty_row"].append(i)
        langs.append(None)
        return ""
    try:
        norm = normalize(row, view.format_of(i))
    except DataError as exc:
        flags["invalid"].append(i)
        reasons[i] = f"{view.where(i)}: {exc}"
        if _empty_cause(str(exc), row):
            flags["empty_turn"].append(i)
        langs.append(None)
        return normal_text(_flat(row))
    turns_list = _conversations(norm)
    if turns_list and "messages" in norm:
        convs[i] = norm["messages"]
    whole = " ".join(m["content"] for t in turns_list for m in t)
    lang = _language(whole)
    langs.append(lang)
    for turns in turns_list:
        _turn_checks(i, turns, flags, min_chars, lang == "mixed")
    return normal_text(whole)


def _empty_cause(reason: str, row: dict) -> bool:
    """Whether a row training refuses is refused for an empty turn (not for a missing column or a wrong shape)."""
    named = re.search(r"missing or empty '([^']+)'", reason)
    if named:
        value = row.get(named.group(1))
        return isinstance(value, str) and not value.strip()
    return "empty" in reason or "only whitespace" in reason


def _conversations(norm: dict) -> list[list[dict]]:
    if "text" in norm:
        return [[{"role": "text", "content": norm["text"]}]]
    if "messages" in norm:
        return [norm["messages"]]
    prompt = list(norm.get("prompt") or [])
    sides = ("chosen", "rejected") if "chosen" in norm else ("completion",)
    return [prompt + list(norm[s]) for s in sides]


def _turn_checks(i: int, turns: list[dict], flags: dict, min_chars: int, mixed: bool) -> None:
    """``mixed``: the row holds both languages (only then can a question and its answer differ in language)."""
    contents = [m["content"] for m in turns]
    if any(not c.strip() for c in contents):
        flags["empty_turn"].append(i)
    if any(c.strip().casefold() in NULL_TEXTS for c in contents):
        flags["null_text"].append(i)
    if turns[0]["role"] == "text":
        return
    roles = [m["role"] for m in turns if m["role"] != "system"]
    if not roles or roles[0] != "user" or roles[-1] != "assistant" or any(a == b for a, b in zip(roles, roles[1:])):
        flags["roles"].append(i)
    prompt = ""
    for m in turns:
        if m["role"] == "user":
            prompt = m["content"]
        elif m["role"] == "assistant" and m["content"].strip():
            _answer_checks(i, prompt, m["content"], flags, min_chars, mixed)


def _answer_checks(i: int, prompt: str, answer: str, flags: dict, min_chars: int, mixed: bool) -> None:
    if len(answer.strip()) < min_chars:
        flags["short_answer"].append(i)
    p, a = " ".join(prompt.casefold().split()), " ".join(answer.casefold().split())
    if p and (a == p or (len(p) >= 8 and a.startswith(p))):
        flags["echo"].append(i)
    if mixed:
        lp, la = _language(prompt), _language(answer)
        if lp and la and lp != la and lp != "mixed" and la != "mixed":
            flags["answer_language"].append(i)


def _language(text: str) -> str | None:
    """'zh', 'en', 'mixed' (20-80 % Chinese, counting four Latin letters as one character), or None for too little text."""
    cjk, latin = len(_CJK.findall(text)), len(_LATIN.findall(text))
    units = cjk + latin / 4  # about four Latin letters carry what one Chinese character does
    if units < 4:
        return None
    share = cjk / units
    return "zh" if share >= 0.8 else "en" if share <= 0.2 else "mixed"


def _language_flags(langs: list, flags: dict) -> dict:
    known = [x for x in langs if x]
    shares = {k: round(known.count(k) / len(known), 3) for k in ("zh", "en", "mixed")} if known else {}
    flags["mixed_language"] = [i for i, x in enumerate(langs) if x == "mixed"]
    major = max(("zh", "en"), key=lambda k: shares.get(k, 0)) if shares else None
    if major and shares[major] >= 0.8:
        flags["language"] = [i for i, x in enumerate(langs) if x in ("zh", "en") and x != major]
    return dict(shares, majority=major if major and shares.get(major, 0) >= 0.8 else None)


def _cut_answers(convs: dict, tokenizer, cutoff_len, sample, train_on_prompt, system, flags) -> int:
    """Rows whose cutoff falls inside an answer: truncated, and the last kept token is a trained (answer) token."""
    rows = sorted(convs)
    step = max(1, -(-len(rows) // sample)) if sample else 1
    picked = rows[::step]
    long_rows = []
    for start in range(0, len(picked), 512):  # lengths first, in batches: only rows over the cutoff can be cut
        chunk = picked[start:start + 512]
        texts = []
        for i in chunk:
            try:
                texts.append(render_text(tokenizer, with_system(convs[i], system)))
            except Exception:  # noqa: BLE001  (a template error on one row is that row's problem: rendered below)
                texts.append(None)
        ids = tokenizer([t or "" for t in texts], add_special_tokens=False)["input_ids"]
        long_rows += [i for i, t, n in zip(chunk, texts, ids) if t is None or len(n) > cutoff_len]
    for i in long_rows:
        try:
            r = render_example(tokenizer, convs[i], cutoff_len, train_on_prompt, system)
        except DataError:
            continue
        if r.truncated and r.labels and r.labels[-1] != -100 and not train_on_prompt:
            flags["cut_answer"].append(i)
        elif r.truncated and train_on_prompt:
            flags["cut_answer"].append(i)
    return len(picked) if step > 1 else 0


def _text_of_row(view: DatasetView, i: int, row: dict) -> str:
    try:
        return normal_text(" ".join(m["content"] for t in _conversations(normalize(row, view.format_of(i))) for m in t))
    except DataError:
        return normal_text(_flat(row))


def _flat(value) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        return "\n".join(_flat(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return "\n".join(_flat(v) for v in value)
    return "" if value is None else str(value)


# -- duplicates ----------------------------------------------------------------------------------------------------------


def _exact_groups(texts: list[str]) -> list[list[int]]:
    seen: dict[str, list[int]] = defaultdict(list)
    for i, text in enumerate(texts):
        if text:
            seen[text].append(i)
    return [g for g in seen.values() if len(g) > 1]


def shingles(text: str, cache: dict | None = None):
    """Hashes (uint64 array, unique) of the 3-grams of words and CJK characters of a normalised text (a text of fewer
    than three: of the text itself), from its first MAX_SHINGLES words. Stable across processes (CRC-32 of each word,
    combined with fixed odd multipliers), so a report is the same every time."""
    import numpy as np

    cache = {} if cache is None else cache
    words = text.split(" ", MAX_SHINGLES + 2)[:MAX_SHINGLES + 2] if text else []
    if len(words) < 3:
        return np.array([_word_hash(text, cache)], dtype=np.uint64) if text else np.empty(0, dtype=np.uint64)
    w = np.fromiter((_word_hash(x, cache) for x in words), dtype=np.uint64, count=len(words))
    with np.errstate(over="ignore"):
        grams = w[:-2] * _MIX[0] ^ w[1:-1] * _MIX[1] ^ w[2:] * _MIX[2]
    return np.unique(grams)


_MIX = tuple(__import__("numpy").uint64(m) for m in (0x9E3779B97F4A7C15, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9))


def _word_hash(word: str, cache: dict) -> int:
    h = cache.get(word)
    if h is None:
        data = word.encode("utf-8")
        h = cache[word] = zlib.crc32(data) | (zlib.adler32(data) << 32)
    return h


def minhash_all(texts: list[str]):
    """A (rows, NUM_PERM) uint32 array of MinHash signatures (multiply-shift hashing of the shingle hashes); an empty
    text gets all 0xFFFFFFFF (it matches nothing)."""
    import numpy as np

    rng = np.random.default_rng(20260101)
    mult = rng.integers(1, 2**63, size=NUM_PERM, dtype=np.uint64) * np.uint64(2) + np.uint64(1)  # odd multipliers
    out = np.full((len(texts), NUM_PERM), 0xFFFFFFFF, dtype=np.uint32)
    chunk_ids, chunk_rows, cache = [], [], {}
    for i, text in enumerate(texts):
        sh = shingles(text, cache)
        if len(sh):
            chunk_ids.append(sh)
            chunk_rows.append(i)
        if len(chunk_rows) >= 2048 or (i == len(texts) - 1 and chunk_rows):
            _sign(chunk_ids, chunk_rows, mult, out)
            chunk_ids, chunk_rows = [], []
    return out


def _sign(ids: list, rows: list[int], mult, out) -> None:
    import numpy as np

    flat = np.concatenate(ids)
    starts = np.cumsum([0] + [len(x) for x in ids[:-1]])
    with np.errstate(over="ignore"):  # multiply-shift: the product wraps modulo 2^64 on purpose
        hashed = ((flat[None, :] * mult[:, None]) >> np.uint64(32)).astype(np.uint32)
    out[rows] = np.minimum.reduceat(hashed, starts, axis=1).T


def _near_groups(sig, threshold: float, skip: set[int]) -> list[list[int]]:
    """Groups of rows whose estimated Jaccard similarity to another member is >= threshold (union-find over LSH pairs)."""
    parent = list(range(len(sig)))

    def find(x):
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b in _candidate_pairs(sig, skip):
        if (sig[a] == sig[b]).mean() >= threshold:
            ra, rb = find(a), find(b)
            if ra != rb:
                parent[max(ra, rb)] = min(ra, rb)
    groups: dict[int, list[int]] = defaultdict(list)
    for i in range(len(sig)):
        if i not in skip:
            groups[find(i)].append(i)
    return sorted((sorted(g) for g in groups.values() if len(g) > 1), key=lambda g: g[0])


def _buckets(sig, skip: set[int]):
    """Per band, the groups of rows (ascending) whose hashes in that band are all equal; empty texts never group."""
    import numpy as np

    width = sig.shape[1] // BANDS
    keep = np.ones(len(sig), dtype=bool)
    keep[list(skip)] = False
    keep &= sig[:, 0] != 0xFFFFFFFF
    valid = np.flatnonzero(keep)
    for band in range(BANDS):
        part = np.ascontiguousarray(sig[valid, band * width:(band + 1) * width])
        keys = part.view(np.dtype((np.void, part.dtype.itemsize * width))).ravel()
        _, inverse, counts = np.unique(keys, return_inverse=True, return_counts=True)
        multi = counts[inverse] > 1
        idx, inv = valid[multi], inverse[multi]
        order = np.argsort(inv, kind="stable")
        idx, inv = idx[order], inv[order]
        yield from np.split(idx, np.flatnonzero(np.diff(inv)) + 1) if len(idx) else ()


def _candidate_pairs(sig, skip: set[int]):
    """Row pairs that share a whole band of their signatures: each bucket as a star from its first row (enough to
    connect a group), each pair at most once."""
    seen = set()
    for members in _buckets(sig, skip):
        first = int(members[0])
        for other in members[1:]:
            pair = (first, int(other))
            if pair not in seen:
                seen.add(pair)
                yield pair


def _shared_with(texts: list[str], sig, eval_texts: list[str], threshold: float) -> list[int]:
    """Rows of ``texts`` that are also in ``eval_texts``: the same normalised text, or a near duplicate of one (every
    train row of a bucket checked against every eval row of it)."""
    import numpy as np

    exact = {t for t in eval_texts if t}
    hits = {i for i, t in enumerate(texts) if t and t in exact}
    both = np.vstack([sig, minhash_all(eval_texts)])
    n = len(texts)
    for members in _buckets(both, set()):
        train = [int(m) for m in members if m < n and m not in hits]
        held = [int(m) for m in members if m >= n]
        for a in train:
            if any((both[a] == both[b]).mean() >= threshold for b in held[:64]):
                hits.add(a)
    return sorted(hits)
