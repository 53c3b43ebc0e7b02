"""Evaluate and predict: answer a dataset with a base or tuned model, score the answers, compare base and tuned.

    studio eval --adapter runs/RUN --split val --metrics em,f1,rougeL,bleu,ppl --compare
    studio eval --model default --data data/x.jsonl@200 --metrics f1 --custom-metric my_metrics.py:triple_f1 --out evals/x

Rows come from a dataset spec (``PATH[#NAME][@MAX]``) or from a run's held-out split (``data.val_size``), rebuilt exactly
as training made it (same files, chat template, cutoff, seed and shuffle). The prompt of a row is its conversation up to
the last assistant message; that message is the reference.

The output folder holds:

- ``predictions.jsonl``: one line per (model, row), written as each batch finishes: ``{row, model, source, prompt,
  reference, prediction}`` (``model`` is ``base`` or ``tuned``). A rerun into the same folder skips what is there, so an
  interrupted evaluation resumes; the settings are kept in ``eval_settings.json`` and a rerun with other settings is
  refused instead of mixing answers.
- ``progress.json``: phase, done/total, elapsed, ETA, state (running/finished/failed) - what the UI polls.
- ``results.json``: the metrics table (per metric: base, tuned, delta), the rows that changed most, the run's probe scores.

Perplexity: the references are teacher-forced through the model and the loss is taken on the reference tokens only (the
end-of-turn token included, as in training); ``ppl`` = exp(total loss / total reference tokens), ``loss`` = that mean.
With a LoRA adapter, base and tuned share one model in memory (the adapter is switched off for the base, as in Chat).
"""

from __future__ import annotations

import json
import math
import random
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from studio.engine import rundir
from studio.engine.data.load import DataError, load_dataset_spec, with_system
from studio.engine.evaluate.scores import ROW_LEVEL, CustomMetric, load_custom_metric, parse_metrics, score

PREDICTIONS = "predictions.jsonl"
PROGRESS = "progress.json"
RESULTS = "results.json"
SETTINGS = "eval_settings.json"
LOG = "eval.log"
EVAL_DIR = "eval"  # default output folder inside a run
CHANGED_ROWS = 10
LOSS_MAX_TOKENS = 2048
# the settings that make answers comparable: a rerun into a folder must match them to reuse its predictions
_RESUME_KEYS = ("model", "adapter", "data", "split", "system", "max_new_tokens", "temperature", "top_p",
                "repetition_penalty")


class EvalError(ValueError):
    """An evaluation that cannot run as asked (no held-out split, no adapter to compare, a folder holding other answers)."""


@dataclass
class EvalRow:
    row: int  # position in the evaluated list: the key for resuming
    source: str  # "SPEC: row N" (N counts from 1 in that dataset)
    messages: list[dict]  # the conversation up to the answer
    reference: str

    @property
    def prompt(self) -> str:
        return next((m["content"] for m in reversed(self.messages) if m["role"] == "user"), "")


@dataclass
class GenSettings:
    max_new_tokens: int = 128
    temperature: float = 0.0
    top_p: float = 1.0
    repetition_penalty: float = 1.0
    batch_size: int = 8


@dataclass
class EvalRequest:
    model: str = "default"
    adapter: str = ""
    data: str = ""
    split: str = "all"  # "all" rows of --data, or "val": the run's held-out split
    metrics: list[str] = field(default_factory=lambda: ["em", "f1", "rougeL", "bleu"])
    custom_metrics: list[str] = field(default_factory=list)
    compare: bool = False
    system: str = ""
    gen: GenSettings = field(default_factory=GenSettings)


# ----------------------------------------------------------------------------------------------------------------------------
# Rows


def to_eval_row(index: int, source: str, messages: list[dict], system: str = "") -> EvalRow:
    msgs = with_system(messages, system)
    last = max((i for i, m in enumerate(msgs) if m["role"] == "assistant"), default=-1)
    if last < 0 or not any(m["role"] == "user" for m in msgs[:last]):
        raise DataError(f"{source}: needs a user message followed by an assistant answer (the reference)")
    return EvalRow(index, source, msgs[:last], msgs[last]["content"])


def dataset_rows(spec: str, system: str = "", on_bad_row: str = "error") -> list[EvalRow]:
    ds = load_dataset_spec(spec, on_bad_row)
    if not ds.records:
        raise DataError(f"{spec}: no rows to evaluate")
    return [to_eval_row(i, f"{spec}: row {i + 1}", r["messages"], system) for i, r in enumerate(ds.records)]


def run_config(run_dir: Path):
    from studio import config as C

    path = Path(run_dir) / rundir.CONFIG
    if not path.is_file():
        raise EvalError(f"{run_dir}: not a run folder (no {rundir.CONFIG}); the val split needs the run that made it")
    return C.load(path)


def val_rows(run_dir: str | Path) -> list[EvalRow]:
    """The run's held-out rows, rebuilt as ``data.prepare_sft_data`` split them: the same datasets (identity files
    included), rendered with the same template and cutoff, rows without a trained token dropped, shuffled with the seed."""
    from studio.engine.data.load import eval_count, render_example
    from studio.engine.selfcog.identity import IDENTITY_FILE, REPLAY_FILE, TEMPLATE_FILE
    from studio.engine.models import load_tokenizer

    run_dir = Path(run_dir)
    cfg = run_config(run_dir)
    if cfg.data.val_size <= 0:
        raise EvalError(f"{run_dir}: this run kept no held-out rows (data.val_size=0); evaluate on a dataset with --data")
    specs = list(cfg.data.datasets)
    template = cfg.model.chat_template
    if cfg.identity.name_en.strip():  # the self-cognition files the run wrote next to its config
        specs += [str(run_dir / f) for f in (IDENTITY_FILE, REPLAY_FILE) if (run_dir / f).is_file()]
        if cfg.identity.system_prompt.strip() and (run_dir / TEMPLATE_FILE).is_file():
            template = str(run_dir / TEMPLATE_FILE)
    tok = load_tokenizer(cfg.model.name_or_path, template, cfg.model.trust_remote_code)
    kept = []
    for spec in specs:
        ds = load_dataset_spec(spec, cfg.data.on_bad_row, cfg.data.max_samples)
        for i, rec in enumerate(ds.records, start=1):
            try:
                r = render_example(tok, rec["messages"], cfg.training.cutoff_len, cfg.data.train_on_prompt, cfg.data.system)
            except DataError:
                if cfg.data.on_bad_row != "skip":
                    raise
                continue
            if r.num_trained:
                kept.append((spec, i, rec["messages"]))
    random.Random(cfg.training.seed).shuffle(kept)  # a shuffle's order depends only on the length: same as training's
    held_out = kept[:eval_count(cfg.data.val_size, len(kept))]
    return [to_eval_row(k, f"{spec}: row {i}", msgs, cfg.data.system) for k, (spec, i, msgs) in enumerate(held_out)]


def resolve_run_dir(adapter: str) -> Path | None:
    """The run folder behind an adapter argument (a run folder, or its adapter/ / model/ / merged/ subfolder)."""
    if not adapter:
        return None
    p = Path(adapter).expanduser()
    for cand in (p, p.parent):
        if (cand / rundir.CONFIG).is_file():
            return cand
    return None


def default_out_dir(adapter: str = "", data: str = "", split: str = "") -> Path | None:
    """RUN/eval/<rows> for a run (``val`` or the dataset's name), so each dataset of a run resumes in its own folder;
    None when the tuned side is not a run (the caller must choose a folder)."""
    run = resolve_run_dir(adapter)
    if run is None:
        return None
    if split == "val" or not data:
        return run / EVAL_DIR / "val"
    from studio.engine.data.load import parse_spec

    ref = parse_spec(data)
    name = "-".join(x for x in (ref.path.stem or ref.path.name, ref.name, str(ref.max_rows) if ref.max_rows else "") if x)
    return run / EVAL_DIR / (re.sub(r"[^\w.-]+", "-", name).strip("-.") or "data")


def load_rows(req: EvalRequest) -> list[EvalRow]:
    if req.split == "val":
        run = resolve_run_dir(req.adapter) or resolve_run_dir(req.data)
        if run is None:
            raise EvalError("--split val evaluates a run's held-out rows: pass the run folder as --adapter (or --data)")
        return val_rows(run)
    if req.split not in ("all", ""):
        raise EvalError(f"--split {req.split!r}: use 'all' (every row of --data) or 'val' (the run's held-out rows)")
    if not req.data.strip():
        raise EvalError("nothing to evaluate: give --data PATH[#NAME][@MAX] or --split val with a run")
    return dataset_rows(req.data, req.system)


# ----------------------------------------------------------------------------------------------------------------------------
# The output folder


def read_predictions(path: Path) -> dict[tuple[str, int], dict]:
    """(model, row) -> record; a half-written last line (killed mid-write) is ignored and later rewritten."""
    out: dict[tuple[str, int], dict] = {}
    if not path.is_file():
        return out
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rec = json.loads(line)
            out[(rec["model"], int(rec["row"]))] = rec
        except (json.JSONDecodeError, KeyError, TypeError, ValueError):
            continue
    return out


def _repair(path: Path) -> dict[tuple[str, int], dict]:
    """Read predictions.jsonl; when it has a torn or repeated line (killed mid-write), rewrite it with one complete line
    per (model, row), so appending never glues onto half a line."""
    done = read_predictions(path)
    if path.is_file():
        text = path.read_text(encoding="utf-8")
        if len(text.splitlines()) != len(done) or (text and not text.endswith("\n")):
            rundir.atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in done.values()))
    return done


def settings_of(req: EvalRequest) -> dict:
    adapter = str(Path(req.adapter).expanduser().resolve()) if req.adapter else ""
    return {"model": req.model or "default", "adapter": adapter, "data": req.data, "split": req.split or "all",
            "system": req.system, "max_new_tokens": req.gen.max_new_tokens, "temperature": req.gen.temperature,
            "top_p": req.gen.top_p, "repetition_penalty": req.gen.repetition_penalty}


def prepare_out_dir(out_dir: Path, req: EvalRequest, overwrite: bool = False) -> None:
    """Create the folder; refuse one whose predictions were made with other settings (unless ``overwrite``)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    wanted = settings_of(req)
    old_path = out_dir / SETTINGS
    if overwrite:
        for name in (PREDICTIONS, RESULTS, PROGRESS):
            (out_dir / name).unlink(missing_ok=True)
    elif old_path.is_file() and (out_dir / PREDICTIONS).is_file():
        old = json.loads(old_path.read_text(encoding="utf-8"))
        diff = [f"{k}: {old.get(k)!r} -> {wanted[k]!r}" for k in _RESUME_KEYS if old.get(k) != wanted[k]]
        if diff:
            raise EvalError(f"{out_dir} holds predictions made with other settings ({'; '.join(diff)}); "
                            "choose another output folder or pass --overwrite")
    rundir.atomic_write_text(old_path, json.dumps(wanted, indent=2, ensure_ascii=False))


class Progress:
    """Counts work, estimates the time left, writes progress.json and hands a plain dict to the caller's callback."""

    def __init__(self, out_dir: Path, callback: Callable[[dict], None] | None):
        self.out_dir, self.callback = out_dir, callback
        self.start = time.time()
        self.phase_start, self.phase_done0 = self.start, 0
        self.name, self.total = "loading", 0

    def phase(self, name: str, done: int, total: int) -> None:
        self.name, self.total = name, total
        self.phase_start, self.phase_done0 = time.time(), done
        self.update(done)

    def update(self, done: int, **extra) -> None:
        now = time.time()
        fresh = done - self.phase_done0  # rows done in this process: resumed rows cost nothing, they must not skew the ETA
        rate = fresh / (now - self.phase_start) if fresh and now > self.phase_start else None
        info = {"state": "running", "phase": self.name, "done": done, "total": self.total,
                "elapsed": round(now - self.start, 1), "rows_per_s": round(rate, 3) if rate else None,
                "eta": round((self.total - done) / rate, 1) if rate else None, **extra}
        self.write(info)
        if self.callback:
            self.callback(info)

    def write(self, info: dict) -> None:
        rundir.atomic_write_text(self.out_dir / PROGRESS, json.dumps(dict(info, updated_at=time.time()), ensure_ascii=False))


def read_progress(out_dir: str | Path) -> dict:
    try:
        return json.loads((Path(out_dir) / PROGRESS).read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def read_results(out_dir: str | Path) -> dict | None:
    try:
        return json.loads((Path(out_dir) / RESULTS).read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return None


# ----------------------------------------------------------------------------------------------------------------------------
# Generation and reference loss


def predict(chat, rows: list[EvalRow], sides: list[str], gen: GenSettings, out_dir: Path, progress: Progress) -> dict:
    """Answer every (side, row) not yet in predictions.jsonl, appending each batch as it finishes."""
    path = out_dir / PREDICTIONS
    done = {k: v for k, v in _repair(path).items() if k[0] in sides}
    wanted = {(s, r.row) for s in sides for r in rows}
    count = len(wanted & done.keys())
    progress.phase("generate", count, len(wanted))
    todo = [r for r in rows if any((s, r.row) not in done for s in sides)]
    kw = dict(max_new_tokens=gen.max_new_tokens, temperature=gen.temperature, top_p=gen.top_p,
              repetition_penalty=gen.repetition_penalty)
    for i in range(0, len(todo), max(1, gen.batch_size)):
        batch = todo[i:i + max(1, gen.batch_size)]
        for side in sides:
            need = [r for r in batch if (side, r.row) not in done]
            if not need:
                continue
            answers = chat.generate([r.messages for r in need], use_adapter=side == "tuned", batch_size=len(need), **kw)
            with open(path, "a", encoding="utf-8") as fh:
                for r, answer in zip(need, answers):
                    rec = {"row": r.row, "model": side, "source": r.source, "prompt": r.prompt, "reference": r.reference,
                           "prediction": answer}
                    fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
                    done[(side, r.row)] = rec
            count += len(need)
            progress.update(count, side=side)
    return {side: [done[(side, r.row)]["prediction"] for r in rows] for side in sides}


def loss_example(tok, messages: list[dict], reference: str, max_tokens: int = LOSS_MAX_TOKENS) -> tuple[list[int], list[bool]]:
    """Token ids of the conversation with its reference answer, and which tokens are the answer (end-of-turn included)."""
    from studio.engine.data.load import render_text, assistant_char_spans

    msgs = list(messages) + [{"role": "assistant", "content": reference}]
    full = render_text(tok, msgs)
    start, end = assistant_char_spans(tok, msgs, full)[-1]
    enc = tok(full, add_special_tokens=False, return_offsets_mapping=True)
    ids = list(enc["input_ids"])
    mask = [start <= a < end for a, _ in enc["offset_mapping"]]
    if len(ids) > max_tokens:  # keep the answer: cut the oldest context
        ids, mask = ids[-max_tokens:], mask[-max_tokens:]
    return ids, mask


def reference_losses(chat, rows: list[EvalRow], side: str, batch_size: int, progress: Progress | None = None,
                     done0: int = 0) -> list[tuple[float, int]]:
    """(summed negative log-likelihood, number of reference tokens) per row, teacher-forced, batched with left padding.

    Left padding puts every answer at the end of its row, so only the last K positions need logits (``logits_to_keep``):
    a batch costs batch x K x vocab floats instead of batch x length x vocab.
    """
    import torch
    import torch.nn.functional as F

    out: list[tuple[float, int]] = []
    with chat.lock, chat.variant(side == "tuned") as (model, tok):
        pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        for i in range(0, len(rows), max(1, batch_size)):
            chunk = [loss_example(tok, r.messages, r.reference) for r in rows[i:i + max(1, batch_size)]]
            length = max(len(ids) for ids, _ in chunk)
            keep = max(len(m) - m.index(True) if True in m else 1 for _, m in chunk) + 1
            keep = min(keep, length)
            ids = torch.full((len(chunk), length), pad, dtype=torch.long)
            labels = torch.full((len(chunk), length), -100, dtype=torch.long)
            att = torch.zeros((len(chunk), length), dtype=torch.long)
            for b, (x, m) in enumerate(chunk):
                ids[b, length - len(x):] = torch.tensor(x)
                labels[b, length - len(x):] = torch.tensor([t if k else -100 for t, k in zip(x, m)])
                att[b, length - len(x):] = 1
            position_ids = (att.cumsum(-1) - 1).clamp(min=0)
            device = next(model.parameters()).device
            inputs = {"input_ids": ids.to(device), "attention_mask": att.to(device), "position_ids": position_ids.to(device)}
            with torch.inference_mode():
                try:
                    logits = model(**inputs, logits_to_keep=keep).logits
                except TypeError:  # a model without logits_to_keep: slice afterwards
                    logits = model(**inputs).logits[:, -keep:]
            targets = labels[:, length - keep + 1:].to(device)
            nll = F.cross_entropy(logits[:, :-1].float().reshape(-1, logits.shape[-1]), targets.reshape(-1),
                                  ignore_index=-100, reduction="none").view(targets.shape)
            out += [(float(nll[b].sum()), int((targets[b] != -100).sum())) for b in range(len(chunk))]
            if progress:
                progress.update(done0 + len(out), side=side)
    return out


def perplexity(losses: list[tuple[float, int]]) -> dict:
    tokens = sum(n for _, n in losses)
    mean = sum(s for s, _ in losses) / tokens if tokens else float("nan")
    return {"ppl": math.exp(mean) if tokens else float("nan"), "loss": mean, "tokens": tokens}


# ----------------------------------------------------------------------------------------------------------------------------
# One evaluation, end to end


def sides_for(req: EvalRequest) -> list[str]:
    if req.compare and not req.adapter:
        raise EvalError("--compare needs a tuned model: pass --adapter (a run folder, an adapter or a merged folder)")
    return ["base", "tuned"] if req.compare else (["tuned"] if req.adapter else ["base"])


def evaluate(req: EvalRequest, out_dir: str | Path, progress: Callable[[dict], None] | None = None, chat=None,
             overwrite: bool = False) -> dict:
    """Predict, score, compare; writes predictions.jsonl, progress.json and results.json into ``out_dir``."""
    out_dir = Path(out_dir).expanduser()
    metrics = parse_metrics(req.metrics)
    custom = [load_custom_metric(c) for c in req.custom_metrics if c.strip()]
    if not metrics and not custom:
        raise EvalError("no metric chosen: give --metrics (em, f1, rougeL, bleu, ppl) or --custom-metric")
    sides = sides_for(req)
    rows = load_rows(req)
    prepare_out_dir(out_dir, req, overwrite)
    prog = Progress(out_dir, progress)
    try:
        prog.write({"state": "running", "phase": "loading", "done": 0, "total": len(rows) * len(sides), "elapsed": 0})
        if chat is None:
            from studio.engine.generate import ChatModel

            chat = ChatModel(req.model or "default", req.adapter or None)
        result = _evaluate_loaded(chat, req, rows, sides, metrics, custom, out_dir, prog)
    except BaseException as exc:  # the UI polls progress.json: it must learn that the job died, and why
        prog.write({"state": "failed", "error": f"{type(exc).__name__}: {exc}"[:2000],
                    "elapsed": round(time.time() - prog.start, 1)})
        raise
    rundir.atomic_write_text(out_dir / RESULTS, json.dumps(result, indent=2, ensure_ascii=False))
    prog.write({"state": "finished", "phase": "done", "done": len(rows) * len(sides), "total": len(rows) * len(sides),
                "elapsed": result["seconds"]})
    return result


def _evaluate_loaded(chat, req: EvalRequest, rows: list[EvalRow], sides: list[str], metrics: list[str],
                     custom: list[CustomMetric], out_dir: Path, prog: Progress) -> dict:
    text_metrics = [m for m in metrics if m != "ppl"]
    predictions: dict[str, list[str]] = {}
    if text_metrics or custom:
        predictions = predict(chat, rows, sides, req.gen, out_dir, prog)
    refs = [r.reference for r in rows]
    summary: dict[str, dict[str, float]] = {}
    per_row: dict[str, dict[str, list[float]]] = {}
    for side in sides:
        if side in predictions:
            summary[side], per_row[side] = score(predictions[side], refs, text_metrics, custom)
        else:
            summary[side], per_row[side] = {}, {}
    if "ppl" in metrics:
        prog.phase("loss", 0, len(rows) * len(sides))
        for k, side in enumerate(sides):
            losses = reference_losses(chat, rows, side, req.gen.batch_size, prog, done0=k * len(rows))
            summary[side].update({m: v for m, v in perplexity(losses).items() if m != "tokens"})
            per_row[side]["loss"] = [s / n if n else float("nan") for s, n in losses]
    names = [m for m in text_metrics] + [c.name for c in custom] + (["ppl", "loss"] if "ppl" in metrics else [])
    table = metrics_table(summary, names)
    result = {"table": table, "rows": len(rows), "models": sides, "settings": settings_of(req),
              "metrics": names, "seconds": round(time.time() - prog.start, 1), "out_dir": str(out_dir)}
    if len(sides) == 2:
        result["changed_most"] = changed_most(rows, predictions, per_row)
    run = resolve_run_dir(req.adapter)
    if run is not None:
        from studio.engine.selfcog.probe import load_probe

        probe = load_probe(run)
        if probe:
            result["probe"] = {k: v for k, v in probe.items() if k != "rows"}
    return result


def metrics_table(summary: dict[str, dict[str, float]], names: list[str]) -> dict[str, dict[str, float]]:
    """{metric: {"base": x, "tuned": y, "delta": y - x}} (only the sides that ran; delta with both)."""
    table = {}
    for name in names:
        row = {side: _clean(vals[name]) for side, vals in summary.items() if name in vals}
        if "base" in row and "tuned" in row and row["base"] is not None and row["tuned"] is not None:
            row["delta"] = _clean(row["tuned"] - row["base"])
        table[name] = row
    return table


def _clean(v: float) -> float | None:
    return None if v is None or (isinstance(v, float) and not math.isfinite(v)) else round(float(v), 6)


def changed_most(rows: list[EvalRow], predictions: dict[str, list[str]], per_row: dict[str, dict[str, list[float]]],
                 k: int = CHANGED_ROWS) -> list[dict]:
    """The rows whose per-row score moved most between base and tuned, by the first metric that moved at all, graded ones
    first: f1, rougeL, custom row metrics, em (0/1 moves less often), then the reference loss."""
    base, tuned = per_row.get("base", {}), per_row.get("tuned", {})
    order = ["f1", "rougeL", *[m for m in base if m not in ROW_LEVEL and m != "loss"], "em", "loss"]
    moved = [m for m in order if m in base and m in tuned and any(b != t for b, t in zip(base[m], tuned[m]))]
    if not moved:
        return []
    key = moved[0]
    out = []
    for i, r in enumerate(rows):
        b, t = base[key][i], tuned[key][i]
        if not (math.isfinite(b) and math.isfinite(t)):
            continue
        out.append({"row": r.row, "source": r.source, "prompt": r.prompt, "reference": r.reference,
                    "base": predictions.get("base", [""] * len(rows))[i] if predictions else "",
                    "tuned": predictions.get("tuned", [""] * len(rows))[i] if predictions else "",
                    "metric": key, "base_score": round(b, 4), "tuned_score": round(t, 4), "delta": round(t - b, 4)})
    out.sort(key=lambda x: (-abs(x["delta"]), x["row"]))
    return [x for x in out if x["delta"]][:k]
