"""Training curves from a run's ``metrics.jsonl``, as long-form DataFrames ready for ``gr.LinePlot(x="step", y="value",
color="series")``.

One row per (step, series) point, with the chart it belongs to: ``run, step, chart, series, value``. The loss gets a second,
EMA-smoothed series (TensorBoard-style, bias-corrected). Preference and RL runs log reward keys (``rewards/chosen``,
``rewards/margins``, ``kl``, ...); they are grouped into their own charts so the UI shows them only when a run has them.

Pure: reads files, returns data; no Gradio, no torch.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from studio.engine import rundir

COLUMNS = ["run", "step", "chart", "series", "value"]
# charts every run has, in display order
BASE_CHARTS = ("loss", "eval_loss", "learning_rate", "grad_norm", "tokens_per_s")
# charts only preference / reward / RL runs have, in display order
REWARD_CHARTS = ("rewards", "margins", "accuracies", "kl", "reward")
NOT_CURVES = {"step", "epoch", "elapsed", "eta", "max_steps", "total_flos", "time", "timestamp"}
SMOOTHED = " (smoothed)"


def chart_of(key: str) -> str:
    """Which chart a metrics key is drawn on (its own name when it has no group)."""
    k = key.lower()
    if k in ("loss", "train_loss"):
        return "loss"
    if k.startswith("eval_") and k.endswith("loss"):
        return "eval_loss"
    if k in ("learning_rate", "lr"):
        return "learning_rate"
    if k in ("tokens_per_s", "train_tokens_per_second"):
        return "tokens_per_s"
    if k.startswith("rewards/margin"):
        return "margins"
    if k.startswith("rewards/accurac"):
        return "accuracies"
    if k.startswith("rewards/"):
        return "rewards"
    if k == "kl" or k.endswith("/kl") or k.startswith("kl"):
        return "kl"
    if k.startswith("reward"):
        return "reward"
    return k


def ema(values: list[float], weight: float) -> list[float]:
    """Bias-corrected exponential moving average: the first points are not dragged towards zero."""
    out, acc = [], 0.0
    for i, v in enumerate(values, start=1):
        acc = weight * acc + (1 - weight) * v
        out.append(acc / (1 - weight ** i) if weight > 0 else v)
    return out


def load_metrics(run_dir: str | Path, smoothing: float = 0.6, run: str | None = None) -> pd.DataFrame:
    """Every numeric metric of one run in long form, plus the smoothed loss. Empty frame (same columns) when none."""
    run_dir = Path(run_dir)
    name = run or run_dir.name
    points: list[tuple] = []
    losses: list[tuple[float, float]] = []
    for i, rec in enumerate(rundir.read_metrics(run_dir)):
        step = rec.get("step", i)
        if not _is_number(step) or rec.get("kind") == "summary":  # the summary line repeats run averages
            continue
        for key, value in rec.items():
            if key in NOT_CURVES or not _is_number(value) or (key == "lr" and "learning_rate" in rec):
                continue
            chart = chart_of(key)
            points.append((name, float(step), chart, key, float(value)))
            if chart == "loss":
                losses.append((float(step), float(value)))
    if losses and 0 < smoothing < 1:
        steps, values = zip(*losses)
        points += [(name, s, "loss", "loss" + SMOOTHED, v) for s, v in zip(steps, ema(list(values), smoothing))]
    return pd.DataFrame(points, columns=COLUMNS)


def overlay(run_dirs: list[str | Path], smoothing: float = 0.6) -> pd.DataFrame:
    """Several runs on the same charts: each series is prefixed with its run id (``<run> · loss``)."""
    frames = []
    for path in run_dirs:
        df = load_metrics(path, smoothing)
        if len(run_dirs) > 1 and not df.empty:
            df["series"] = df["run"] + " · " + df["series"]
        frames.append(df)
    frames = [f for f in frames if not f.empty]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=COLUMNS)


def chart_frame(df: pd.DataFrame, chart: str) -> pd.DataFrame:
    """The points of one chart, sorted by step (what one LinePlot shows)."""
    if df.empty:
        return df
    return df[df["chart"] == chart].sort_values(["series", "step"]).reset_index(drop=True)


def reward_columns(df: pd.DataFrame) -> list[str]:
    """The reward/RL metric keys present in a frame from ``load_metrics``/``overlay`` (empty for SFT runs)."""
    if df.empty:
        return []
    rows = df[df["chart"].isin(REWARD_CHARTS)]
    return sorted({s.split(" · ")[-1] for s in rows["series"].unique()})


def charts_present(df: pd.DataFrame) -> list[str]:
    """Chart names that have at least one point, in display order."""
    have = set(df["chart"].unique()) if not df.empty else set()
    return [c for c in BASE_CHARTS + REWARD_CHARTS if c in have]


def latest(run_dir: str | Path) -> dict:
    """The last metrics line merged over the previous ones (eval lines and train lines alternate)."""
    merged: dict = {}
    for rec in rundir.read_metrics(Path(run_dir)):
        merged.update({k: v for k, v in rec.items() if v is not None})
    return merged


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
