"""Trainer callbacks that write the run folder: metrics lines, live status, and graceful stop.

The trainer knows nothing about a UI: it appends to ``metrics.jsonl``, refreshes ``status.json`` and stops when asked by a
signal (SIGTERM/SIGINT) or a ``STOP`` file, after the current step, saving a checkpoint and the adapter.
"""

from __future__ import annotations

import math
import signal
import time
from pathlib import Path

from transformers import TrainerCallback

from studio.engine import memory, rundir


class StopFlag:
    """Set by SIGTERM/SIGINT or by a STOP file in the run folder; read at the end of every step."""

    def __init__(self, run_dir: Path):
        self.run_dir = Path(run_dir)
        self.reason = ""

    def install_signal_handlers(self) -> None:
        def handler(signum, _frame):
            self.reason = f"signal {signal.Signals(signum).name}"

        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, handler)

    def requested(self) -> bool:
        if not self.reason and (self.run_dir / rundir.STOP).exists():
            self.reason = "STOP file"
        return bool(self.reason)


def _at_start() -> dict:
    """Memory when training begins (model loaded, no batch yet): what ``studio train --plan`` calibrates against."""
    now = memory.step_record()
    out = {"rss_at_start": now["rss_bytes"]}
    if "gpu_mem_bytes" in now:
        out["gpu_at_start"] = now["gpu_mem_bytes"]
    return out


def _clean(value):
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return None
    return value


def _saving(args, state, control) -> int | None:
    """The step whose checkpoint the Trainer saves next (it saves right after on_step_end / on_epoch_end when asked).
    The studio's own PPO loop passes no ``args`` and saves no checkpoints."""
    return state.global_step if control.should_save and args is not None else None


class RunFolderCallback(TrainerCallback):
    """Appends one metrics line per log event and keeps status.json current; honours the stop flag."""

    def __init__(self, run_dir: Path, stop: StopFlag, extra_status: dict | None = None):
        self.run_dir = Path(run_dir)
        self.stop = stop
        self.extra = extra_status or {}
        self.start = time.time()
        self.first_step = 0
        self.last_tokens: tuple[float, float] | None = None  # (time, num_tokens) at the previous log
        self.last_status = 0.0
        self.aborted = False
        self.saving_step: int | None = None  # a checkpoint of this step is being written (set until on_save)

    def on_train_begin(self, args, state, control, **kwargs):
        self.start = time.time()
        self.first_step = state.global_step  # > 0 when resuming: ETA counts only steps done in this process
        self.last_tokens = (self.start, 0.0)
        if state.is_world_process_zero and state.global_step > 0:  # resuming: later steps of the lost attempt train again
            moved = rundir.supersede_metrics_after(self.run_dir, state.global_step)
            if moved:
                print(f"resume: {moved} metrics lines after step {state.global_step} moved to {rundir.SUPERSEDED_METRICS}")
        if state.is_world_process_zero:
            rundir.write_status(self.run_dir, state="running", step=state.global_step, max_steps=state.max_steps,
                                epoch=state.epoch or 0.0, **_at_start(), **self.extra)

    def on_step_end(self, args, state, control, **kwargs):
        if self._stop_agreed():
            self.aborted = True
            control.should_training_stop = True
            control.should_save = True  # a checkpoint, so `--resume` can continue from here
        self.saving_step = _saving(args, state, control)
        now = time.time()
        if state.is_world_process_zero and (now - self.last_status > 1.0 or control.should_training_stop):
            self.last_status = now
            rundir.write_status(self.run_dir, step=state.global_step, max_steps=state.max_steps, epoch=state.epoch,
                                elapsed=now - self.start, eta=self._eta(state, now))

    def on_epoch_end(self, args, state, control, **kwargs):
        self.saving_step = _saving(args, state, control)

    def on_save(self, args, state, control, **kwargs):
        self.saving_step = None

    def _stop_agreed(self) -> bool:
        """Under DDP every process must stop at the same step (or the others hang in all-reduce): agree on the flag."""
        wanted = self.stop.requested()
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            import torch

            flag = torch.tensor([1.0 if wanted else 0.0])
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
            wanted = bool(flag.item())
            if wanted and not self.stop.reason:
                self.stop.reason = "stop requested on another process"
        return wanted

    def _eta(self, state, now: float) -> float | None:
        done = state.global_step - self.first_step
        if done <= 0 or not state.max_steps:
            return None
        return (now - self.start) / done * max(0, state.max_steps - state.global_step)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero:
            return
        logs = dict(logs or {})
        now = time.time()
        record = {"step": state.global_step, "epoch": _clean(round(state.epoch or 0.0, 4)), "time": now,
                  "elapsed": round(now - self.start, 3), "eta": self._eta(state, now)}
        if "learning_rate" in logs:
            logs["lr"] = logs["learning_rate"]
        tokens = logs.get("num_tokens")
        if tokens is not None:
            if self.last_tokens is not None and now > self.last_tokens[0]:
                record["tokens_per_s"] = (tokens - self.last_tokens[1]) / (now - self.last_tokens[0])
            self.last_tokens = (now, tokens)
        if "train_runtime" in logs:
            record["kind"] = "summary"
        elif any(k.startswith("eval_") for k in logs):
            record["kind"] = "eval"
        else:
            record["kind"] = "train"
        record.update({k: _clean(v) for k, v in logs.items() if isinstance(v, (int, float, str, bool)) or v is None})
        record.update(memory.step_record())  # RSS (and GPU memory): the Monitor's memory chart
        rundir.append_metrics(self.run_dir, record)
