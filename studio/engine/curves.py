"""Training curves from a run's ``metrics.jsonl``, as long-form DataFrames ready for ``gr.LinePlot(x=..., y="value",
color="series")``.

One row per (point, series), with every x axis a chart can use and the chart it belongs to:
``run, step, epoch, tokens, time, chart, series, value`` (``tokens``: trained tokens so far, carried forward to eval lines;
``time``: seconds since the run's training began). The loss chart holds the train loss, its EMA-smoothed twin
(TensorBoard-style, bias-corrected) and the eval loss (a step-0 point when the run measured the base model first); the
memory chart holds the process RSS and, on a GPU, the memory torch holds there, in GB. Every other numeric key a run logs
is drawn too, without a list of known keys: ``chart_of`` groups related keys onto one chart (``rewards/chosen`` +
``rewards/rejected``; ``accuracy`` + ``rewards/accuracies`` + their ``eval_`` twins; ``completions/mean_length`` ->
response_length; ``a/b`` -> ``a``), and ``extra_charts`` lists the charts beyond the base ones that a frame has.

``chart_view`` turns one chart into what a plot shows: the chosen x axis, the last N points of each series, outliers
clipped to Tukey's far fences, log10 values. Pure: reads files, returns data; no Gradio, no torch.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from studio.engine import rundir

COLUMNS = ["run", "step", "epoch", "tokens", "time", "chart", "series", "value"]
X_AXES = ("step", "epoch", "tokens", "time")  # what a chart's x axis can be
# charts every run has, in display order
BASE_CHARTS = ("loss", "learning_rate", "grad_norm", "tokens_per_s", "memory")
# charts preference / reward / RL runs usually have, shown first (any other logged key gets a chart after them)
REWARD_CHARTS = ("rewards", "margins", "accuracies", "reward", "kl", "entropy", "value_loss", "response_length")
NOT_CURVES = {"step", "epoch", "elapsed", "eta", "max_steps", "total_flos", "time", "timestamp", "num_tokens",
              "num_input_tokens_seen", "eval_runtime", "eval_samples_per_second", "eval_steps_per_second",
              "eval_model_preparation_time", "eval_num_tokens", "train_runtime", "train_samples_per_second",
              "train_steps_per_second", "step_time", "gpu_peak_bytes"}
MEMORY_KEYS = {"rss_bytes": "RSS (GB)", "gpu_mem_bytes": "GPU (GB)"}  # logged in bytes, drawn in GB
SMOOTHED = " (smoothed)"
CLIP_FENCE = 3.0  # Tukey's "far out" fence: points beyond Q3 + 3 IQR (or below Q1 - 3 IQR) are clipped to it


def chart_of(key: str) -> str:
    """Which chart a metrics key is drawn on: a known group, else the part before '/', else the key itself."""
    k = key.lower()
    if k in ("loss", "train_loss") or (k.startswith("eval_") and k.endswith("loss") and k != "eval_value_loss"):
        return "loss"  # train and eval loss on one chart
    if k in MEMORY_KEYS:
        return "memory"
    if k.startswith("eval_"):  # eval_rewards/margins is drawn next to rewards/margins
        k = k[len("eval_"):]
    if k in ("learning_rate", "lr"):
        return "learning_rate"
    if k in ("tokens_per_s", "train_tokens_per_second"):
        return "tokens_per_s"
    if k.startswith(("rewards/margin", "margin")):
        return "margins"
    if k.startswith(("rewards/accurac", "accurac")):
        return "accuracies"
    if k.startswith("rewards/"):
        return "rewards"
    if k == "kl" or k.endswith("/kl") or k.startswith("kl"):
        return "kl"
    if k.startswith(("reward", "mean_reward", "min_reward", "max_reward")):
        return "reward"
    if k.startswith("entropy") or k.endswith("/entropy"):
        return "entropy"
    if "length" in k and (k.startswith(("completions/", "response")) or k == "completion_length"):
        return "response_length"
    return k.split("/", 1)[0] if "/" in k else k


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
    losses: list[tuple] = []
    tokens = None
    for i, rec in enumerate(rundir.read_metrics(run_dir)):
        step = rec.get("step", i)
        if not _is_number(step) or rec.get("kind") == "summary":  # the summary line repeats run averages
            continue
        if _is_number(rec.get("num_tokens")):
            tokens = float(rec["num_tokens"])
        x = (float(step), _num(rec.get("epoch")), tokens, _num(rec.get("elapsed")))
        for key, value in rec.items():
            if key in NOT_CURVES or not _is_number(value) or (key == "lr" and "learning_rate" in rec):
                continue
            chart = chart_of(key)
            if chart == "memory":
                key, value = MEMORY_KEYS[key], value / 1e9
            points.append((name, *x, chart, key, float(value)))
            if key in ("loss", "train_loss"):
                losses.append(x + (float(value),))
    if losses and 0 < smoothing < 1:
        smooth = ema([p[-1] for p in losses], smoothing)
        points += [(name, *p[:4], "loss", "loss" + SMOOTHED, v) for p, v in zip(losses, smooth)]
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


def chart_view(df: pd.DataFrame, chart: str, x: str = "step", last_n: int = 0, clip: bool = False,
               log_scale: bool = False) -> pd.DataFrame:
    """One chart as a plot draws it: columns ``x, value, series``. ``x``: one of ``X_AXES`` (points without that axis,
    such as eval lines before any trained token, are left out); ``last_n`` > 0: only the last N points of each series;
    ``clip``: values beyond Tukey's far fences of their series clipped to the fence (a loss spike stops flattening the
    rest); ``log_scale``: log10 of the values (points <= 0 left out)."""
    if x not in X_AXES:
        raise ValueError(f"x axis {x!r}: one of {', '.join(X_AXES)}")
    frame = chart_frame(df, chart)
    if frame.empty:
        return pd.DataFrame(columns=[x, "value", "series"])
    frame = frame.dropna(subset=[x])
    parts = []
    for _, part in frame.groupby("series", sort=True):
        part = part.sort_values(["step", x])
        if last_n and last_n > 0:
            part = part.tail(int(last_n))
        if clip and len(part) >= 4:
            part = part.assign(value=part["value"].clip(*fences(part["value"])))
        parts.append(part)
    out = pd.concat(parts) if parts else frame.iloc[:0]
    if log_scale:
        out = out[out["value"] > 0].assign(value=lambda f: f["value"].map(math.log10))
    return out[[x, "value", "series"]].reset_index(drop=True)


def fences(values: pd.Series) -> tuple[float, float]:
    """(low, high): Tukey's far-out fences, Q1 - 3 IQR and Q3 + 3 IQR."""
    q1, q3 = float(values.quantile(0.25)), float(values.quantile(0.75))
    return q1 - CLIP_FENCE * (q3 - q1), q3 + CLIP_FENCE * (q3 - q1)


def to_csv(df: pd.DataFrame, chart: str, path: str | Path) -> Path:
    """Every point of one chart (all x axes, every series) as CSV: what the Monitor's download button gives."""
    path = Path(path)
    (chart_frame(df, chart) if not df.empty else pd.DataFrame(columns=COLUMNS)).to_csv(path, index=False)
    return path


def reward_columns(df: pd.DataFrame) -> list[str]:
    """The reward/RL metric keys present in a frame from ``load_metrics``/``overlay`` (empty for SFT runs)."""
    if df.empty:
        return []
    rows = df[df["chart"].isin(REWARD_CHARTS)]
    return sorted({s.split(" · ")[-1] for s in rows["series"].unique()})


def charts_present(df: pd.DataFrame) -> list[str]:
    """Chart names that have at least one point, in display order: base charts, then ``extra_charts``."""
    have = set(df["chart"].unique()) if not df.empty else set()
    return [c for c in BASE_CHARTS if c in have] + extra_charts(df)


def extra_charts(df: pd.DataFrame) -> list[str]:
    """Charts beyond the base ones that the frame has points for: the usual reward/RL ones first, then the rest by name."""
    have = set(df["chart"].unique()) if not df.empty else set()
    rest = sorted(have - set(BASE_CHARTS) - set(REWARD_CHARTS))
    return [c for c in REWARD_CHARTS if c in have] + rest


def latest(run_dir: str | Path) -> dict:
    """The last metrics line merged over the previous ones (eval lines and train lines alternate)."""
    merged: dict = {}
    for rec in rundir.read_metrics(Path(run_dir)):
        merged.update({k: v for k, v in rec.items() if v is not None})
    return merged


def _num(value) -> float | None:
    return float(value) if _is_number(value) else None


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
