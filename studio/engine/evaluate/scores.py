"""Text metrics for predictions vs references: exact match, token F1, ROUGE-L, corpus BLEU-4, and user-written metrics.

Pure Python (no torch, no extra packages), so the UI and tests import it freely. Every metric works on the same tokens:

- ``tokenize``: each CJK character (Chinese hanzi, Japanese kana) is one token; runs of other letters/digits are words,
  lower-cased; punctuation, underscores and spaces separate tokens and are dropped. "Nova是AI助手。" -> nova 是 ai 助 手.
  So Chinese is scored by characters (the usual choice without a word segmenter) and English by words.
- ``em``: 1 when both token lists are equal (case, punctuation and spacing ignored), else 0; averaged over rows.
- ``f1``: SQuAD-style token F1 on the multiset of tokens (precision = overlap / prediction tokens, recall = overlap /
  reference tokens); averaged over rows. Both empty -> 1, one empty -> 0.
- ``rougeL``: ROUGE-L F1 from the longest common subsequence of tokens (beta = 1); averaged over rows.
- ``bleu``: corpus BLEU-4 (Papineni et al. 2002): clipped n-gram matches and n-gram counts summed over all rows for
  n = 1..4, geometric mean of the four precisions, times the brevity penalty exp(1 - r/c) when the predictions are
  shorter than the references in total (c = prediction tokens, r = reference tokens). Smoothing: Lin & Och (2004) add-one
  for n >= 2 (NLTK's ``method2``): p_n = (matches + 1) / (max(1, count) + 1); the unigram precision is not smoothed, so
  no word in common gives 0. One reference per row.

All four are fractions in [0, 1]. ``ppl`` (perplexity of the references) needs the model; see studio.engine.evaluate.predict.

Custom metrics: ``path/to/file.py:function_name``, loaded with importlib. The function's first parameter name decides
its level: ``def fn(prediction, reference) -> float`` is a row metric (the mean over rows is reported, and the per-row
values feed "rows that changed most"); ``def fn(predictions, references) -> float`` (first parameter named
``predictions``) is a corpus metric, called once with the two lists. Set ``fn.corpus_level = True`` to force it.
"""

from __future__ import annotations

import importlib.util
import inspect
import math
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

BUILTIN = ("em", "f1", "rougeL", "bleu", "ppl")
ROW_LEVEL = ("em", "f1", "rougeL")  # metrics with one score per row (bleu is corpus-level, ppl needs the model)
ALIASES = {"em": "em", "exact_match": "em", "exact": "em", "f1": "f1", "token_f1": "f1", "rougel": "rougeL",
           "rouge-l": "rougeL", "rouge_l": "rougeL", "bleu": "bleu", "bleu4": "bleu", "bleu-4": "bleu", "ppl": "ppl",
           "perplexity": "ppl", "loss": "ppl"}

_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_TOKEN = re.compile(rf"[{_CJK}]|(?:(?![{_CJK}])[^\W_])+")


class MetricError(ValueError):
    """An unknown metric name or a custom metric that cannot be loaded or run; the message says which and why."""


def tokenize(text: str) -> list[str]:
    return _TOKEN.findall((text or "").lower())


# ----------------------------------------------------------------------------------------------------------------------------
# Row metrics


def exact_match(prediction: str, reference: str) -> float:
    return float(tokenize(prediction) == tokenize(reference))


def token_f1(prediction: str, reference: str) -> float:
    pred, ref = tokenize(prediction), tokenize(reference)
    if not pred or not ref:
        return float(pred == ref)
    overlap = sum((Counter(pred) & Counter(ref)).values())
    if not overlap:
        return 0.0
    p, r = overlap / len(pred), overlap / len(ref)
    return 2 * p * r / (p + r)


def lcs_length(a: list[str], b: list[str]) -> int:
    """Longest common subsequence, O(len(a) * len(b)) time and O(len(b)) memory."""
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b, start=1):
            cur.append(prev[j - 1] + 1 if x == y else max(prev[j], cur[j - 1]))
        prev = cur
    return prev[-1]


def rouge_l(prediction: str, reference: str) -> float:
    pred, ref = tokenize(prediction), tokenize(reference)
    if not pred or not ref:
        return float(pred == ref)
    lcs = lcs_length(pred, ref)
    if not lcs:
        return 0.0
    p, r = lcs / len(pred), lcs / len(ref)
    return 2 * p * r / (p + r)


ROW_FUNCTIONS: dict[str, Callable[[str, str], float]] = {"em": exact_match, "f1": token_f1, "rougeL": rouge_l}


# ----------------------------------------------------------------------------------------------------------------------------
# Corpus BLEU


def _ngrams(tokens: list[str], n: int) -> Counter:
    return Counter(tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1))


def corpus_bleu(predictions: list[str], references: list[str], max_n: int = 4) -> float:
    """Corpus BLEU-4 with brevity penalty and add-one smoothing for n >= 2 (see the module docstring)."""
    matches, counts = [0] * max_n, [0] * max_n
    pred_len = ref_len = 0
    for prediction, reference in zip(predictions, references):
        pred, ref = tokenize(prediction), tokenize(reference)
        pred_len, ref_len = pred_len + len(pred), ref_len + len(ref)
        for n in range(1, max_n + 1):
            p, r = _ngrams(pred, n), _ngrams(ref, n)
            matches[n - 1] += sum(min(c, r[g]) for g, c in p.items())
            counts[n - 1] += max(0, len(pred) - n + 1)
    if pred_len == 0 or matches[0] == 0:
        return 0.0
    log_p = math.log(matches[0] / counts[0])
    for n in range(1, max_n):
        log_p += math.log((matches[n] + 1) / (max(1, counts[n]) + 1))
    bp = 1.0 if pred_len >= ref_len else math.exp(1 - ref_len / pred_len)
    return bp * math.exp(log_p / max_n)


# ----------------------------------------------------------------------------------------------------------------------------
# Choosing metrics, custom metrics


@dataclass
class CustomMetric:
    name: str
    fn: Callable
    corpus_level: bool
    source: str  # "file.py:function" as the user wrote it


def parse_metrics(text: str | list[str]) -> list[str]:
    """``"em,f1,rougeL,bleu,ppl"`` (any case, aliases allowed) -> canonical names, in order, without duplicates."""
    items = text.split(",") if isinstance(text, str) else list(text)
    out: list[str] = []
    for item in (x.strip() for x in items):
        if not item:
            continue
        name = ALIASES.get(item.lower())
        if name is None:
            raise MetricError(f"unknown metric '{item}': choose from {', '.join(BUILTIN)} "
                              "(or add your own with --custom-metric FILE.py:FUNCTION)")
        if name not in out:
            out.append(name)
    return out


def load_custom_metric(spec: str) -> CustomMetric:
    """``path/to/file.py:function_name`` -> the function, checked to take two arguments."""
    path_text, sep, fn_name = spec.strip().rpartition(":")
    if not sep or not path_text or not fn_name:
        raise MetricError(f"custom metric '{spec}': write it as path/to/file.py:function_name")
    path = Path(path_text).expanduser()
    if not path.is_file():
        raise MetricError(f"custom metric '{spec}': {path}: no such file")
    if path.suffix != ".py":
        raise MetricError(f"custom metric '{spec}': {path} is not a Python (.py) file")
    module_name = f"studio_custom_metric_{abs(hash(str(path.resolve())))}"
    try:
        module_spec = importlib.util.spec_from_file_location(module_name, path)
        module = importlib.util.module_from_spec(module_spec)
        module_spec.loader.exec_module(module)
    except Exception as exc:  # the user's file: a syntax error or a failing import is theirs to fix, with the reason
        raise MetricError(f"custom metric '{spec}': {path} failed to load: {type(exc).__name__}: {exc}") from exc
    fn = getattr(module, fn_name, None)
    if fn is None or not callable(fn):
        found = sorted(n for n, v in vars(module).items() if inspect.isfunction(v) and v.__module__ == module_name)
        raise MetricError(f"custom metric '{spec}': {path} has no function '{fn_name}' "
                          f"(functions there: {', '.join(found) or 'none'})")
    try:
        params = [p for p in inspect.signature(fn).parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    except (TypeError, ValueError):
        params = []
    if len(params) < 2:
        raise MetricError(f"custom metric '{spec}': {fn_name} must take two arguments: (prediction, reference) for a "
                          "row metric or (predictions, references) for a corpus metric")
    corpus = bool(getattr(fn, "corpus_level", params[0].name in ("predictions", "preds", "hypotheses")))
    name = fn_name if fn_name not in BUILTIN else f"{fn_name}_custom"  # never shadows a built-in column
    return CustomMetric(name=name, fn=fn, corpus_level=corpus, source=spec)


def _as_float(value, metric: CustomMetric, where: str) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise MetricError(f"custom metric '{metric.source}' returned {value!r} {where}; it must return a number") from None
    return out


def run_custom(metric: CustomMetric, predictions: list[str], references: list[str]) -> tuple[float, list[float] | None]:
    """(the reported score, the per-row scores or None for a corpus metric)."""
    try:
        if metric.corpus_level:
            return _as_float(metric.fn(list(predictions), list(references)), metric, "for the corpus"), None
        rows = [_as_float(metric.fn(p, r), metric, f"on row {i}") for i, (p, r) in enumerate(zip(predictions, references))]
    except MetricError:
        raise
    except Exception as exc:  # the user's code failed: say where, keep their traceback as the cause
        raise MetricError(f"custom metric '{metric.source}' failed: {type(exc).__name__}: {exc}") from exc
    return (sum(rows) / len(rows) if rows else 0.0), rows


def score(predictions: list[str], references: list[str], metrics: list[str],
          custom: list[CustomMetric] = ()) -> tuple[dict[str, float], dict[str, list[float]]]:
    """Corpus scores {metric: value} and per-row scores {metric: [value per row]} for the text metrics ('ppl' is skipped)."""
    if len(predictions) != len(references):
        raise MetricError(f"{len(predictions)} predictions for {len(references)} references")
    summary: dict[str, float] = {}
    per_row: dict[str, list[float]] = {}
    for name in metrics:
        if name in ROW_FUNCTIONS:
            per_row[name] = [ROW_FUNCTIONS[name](p, r) for p, r in zip(predictions, references)]
            summary[name] = sum(per_row[name]) / len(per_row[name]) if per_row[name] else 0.0
        elif name == "bleu":
            summary[name] = corpus_bleu(predictions, references)
    for metric in custom:
        summary[metric.name], rows = run_custom(metric, predictions, references)
        if rows is not None:
            per_row[metric.name] = rows
    return summary, per_row
