"""Benchmarks through EleutherAI's lm-evaluation-harness (``lm_eval``), when it is installed; the studio does not ship it.

    studio eval --adapter runs/RUN --lm-eval arc_easy,hellaswag --lm-eval-limit 100 --compare --out evals/bench

The model is a local folder: the base (``default`` is the converted embedded model), a merged folder, or the base plus a
PEFT adapter (lm-eval's HF model takes ``peft=ADAPTER``). Tasks come from lm-eval's own registry, from the studio's own
tasks (``assets/lm_eval``: ``studio_qa_en`` and ``studio_qa_zh``, 32 multiple-choice questions each over a JSON file the
studio ships, so nothing is downloaded) or from ``include_path`` (a folder of task YAMLs); hub-hosted task data needs
the network.
Without lm-eval every entry point raises ``LmEvalMissing`` whose message is the install command.
"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

INSTALL_HINT = "lm-evaluation-harness is not installed; install it into the studio's environment: .venv/bin/pip install lm-eval"


class LmEvalMissing(RuntimeError):
    """lm_eval cannot be imported; the message says how to install it."""


class LmEvalError(ValueError):
    """A benchmark request that cannot run (no tasks, an unknown model folder, a task lm-eval rejects)."""


def local_tasks_dir() -> Path:
    """The task YAMLs the studio ships (each over a JSON file beside it)."""
    from studio.paths import assets_dir

    return assets_dir() / "lm_eval"


def available() -> bool:
    return importlib.util.find_spec("lm_eval") is not None


def parse_tasks(text: str | list[str]) -> list[str]:
    items = text.split(",") if isinstance(text, str) else list(text)
    return [x.strip() for x in items if x and x.strip()]


def model_args(model: str, adapter: str = "", dtype: str = "float32") -> dict:
    """lm-eval HF ``model_args`` for a base model, a merged/full folder, or base + PEFT adapter (run folders resolved)."""
    from studio.engine.generate import resolve_tuned
    from studio.engine.models import resolve_model

    base = model or "default"
    if adapter:
        src = resolve_tuned(adapter)
        if src.kind not in ("model", "adapter"):  # a GGUF file: lm-eval's HF model wants a folder
            raise LmEvalError(f"{src.path}: lm-eval runs on a model folder or an adapter; use the merged folder instead")
        if src.kind == "model":
            return {"pretrained": str(src.path), "dtype": dtype}
        if base == "default" and src.base:
            base = src.base
        return {"pretrained": resolve_model(base), "peft": str(src.path), "dtype": dtype}
    return {"pretrained": resolve_model(base), "dtype": dtype}


def results_table(results: dict) -> list[dict]:
    """lm-eval's ``results`` ({task: {"acc,none": v, "acc_stderr,none": s, ...}}) -> [{task, metric, filter, value, stderr}]."""
    rows = []
    for task, vals in sorted((results or {}).get("results", {}).items()):
        for key, value in vals.items():
            if key in ("alias", "sample_len") or "_stderr" in key or not isinstance(value, (int, float)) \
                    or isinstance(value, bool):  # sample_len: lm-eval's row count, not a score
                continue
            metric, _, filt = key.partition(",")
            err = vals.get(f"{metric}_stderr,{filt}" if filt else f"{metric}_stderr")
            rows.append({"task": task, "metric": metric, "filter": filt or "none", "value": _num(value),
                         "stderr": _num(err) if isinstance(err, (int, float)) else None})
    return rows


def _num(v) -> float | None:
    return round(float(v), 6) if v is not None and math.isfinite(float(v)) else None


def run(model: str, tasks: list[str], adapter: str = "", limit: float | None = None, batch_size: int = 8,
        num_fewshot: int | None = None, device: str = "cpu", include_path: str = "") -> list[dict]:
    """One model on the tasks through ``lm_eval.simple_evaluate``; returns the results table."""
    if not available():
        raise LmEvalMissing(INSTALL_HINT)
    tasks = parse_tasks(tasks)
    if not tasks:
        raise LmEvalError("no lm-eval task given (e.g. arc_easy,hellaswag)")
    import lm_eval

    from lm_eval.tasks import TaskManager

    # the studio's own tasks (assets/lm_eval: studio_qa_en, studio_qa_zh; local JSON, no hub) are always known by name
    include = [str(local_tasks_dir())] + ([include_path] if include_path else [])
    kwargs = {"task_manager": TaskManager(include_path=include)}
    try:
        out = lm_eval.simple_evaluate(model="hf", model_args=model_args(model, adapter), tasks=tasks, limit=limit,
                                      batch_size=batch_size, num_fewshot=num_fewshot, device=device, **kwargs)
    except (KeyError, ValueError) as exc:  # unknown task names and bad arguments come back as these
        raise LmEvalError(f"lm-eval refused the request: {exc}") from exc
    return results_table(out)


def compare(model: str, adapter: str, tasks: list[str], **kw) -> list[dict]:
    """The same tasks on base and tuned: [{task, metric, filter, base, tuned, delta}]."""
    base = {(r["task"], r["metric"], r["filter"]): r["value"] for r in run(model, tasks, "", **kw)}
    tuned = {(r["task"], r["metric"], r["filter"]): r["value"] for r in run(model, tasks, adapter, **kw)}
    rows = []
    for key in sorted(base.keys() | tuned.keys()):
        b, t = base.get(key), tuned.get(key)
        rows.append({"task": key[0], "metric": key[1], "filter": key[2], "base": b, "tuned": t,
                     "delta": round(t - b, 6) if b is not None and t is not None else None})
    return rows
