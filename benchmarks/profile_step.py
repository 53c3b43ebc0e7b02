"""Where a training step's time goes: the studio's SFT trainer on a benchmark workload, under ``torch.profiler``.

    python benchmarks/profile_step.py --workload short|long [--steps 3] [--set training.row_attention=false ...]

Builds the trainer exactly as ``studio train`` does (``studio.engine.train.sft.build_trainer``, the default model, the
workload of benchmarks/workloads.py, LoRA r8 all-linear), collates ``--steps`` batches, runs them once to warm up, once
timed without the profiler and once profiled, each step split into forward, backward and the optimizer step. It prints one table of self CPU time per category:

- forward by module (hooks on the decoder's modules): attention (projections included), MLP, norms, embedding, LoRA's own
  matmuls, the LM head and loss (forward time outside the decoder);
- backward by op: matmul gradients (LoRA's own told apart by a dimension equal to the LoRA rank), attention, the LM head and
  loss (log-softmax, gather, logsumexp, CE), elementwise and norm gradients, dtype casts;
- optimizer, data collation, and Python overhead (step time not inside any op).

``--markdown`` prints the table as Markdown for benchmarks/PROFILE.md. Before profiling it also times one pass with
oneDNN's verbose log on and prints how many milliseconds of the (unprofiled) step its matmuls took, by their own
timings: the profiler books page faults and cache misses to whichever op touches memory first, so its shares of small
elementwise ops run high; this line does not depend on it.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from workloads import WORKLOADS, write  # noqa: E402

MATMUL = ("aten::mm", "aten::addmm", "aten::bmm", "aten::matmul", "aten::linear", "aten::baddbmm")
ATTENTION = ("scaled_dot_product", "_flash_attention", "_efficient_attention")
HEAD_LOSS = ("log_softmax", "logsumexp", "gather", "cross_entropy", "nll_loss", "softmax", "argmax", "masked_scatter")
CASTS = ("aten::to", "aten::_to_copy", "aten::copy_")


def config_for(workload: str, overrides: list[str]):
    from studio import config as C
    from train_throughput import LORA_ALPHA, LORA_R, LR, SEED

    w = WORKLOADS[workload]
    files = write(w, Path(tempfile.mkdtemp()) / "data")
    sets = {"data.datasets": [str(files["messages"])], "lora.r": LORA_R, "lora.alpha": LORA_ALPHA,
            "training.cutoff_len": w.cutoff, "training.per_device_train_batch_size": w.batch, "training.learning_rate": LR,
            "training.seed": SEED, "data.train_on_prompt": w.turns > 1}
    cfg = C.apply_overrides(C.RunConfig(), sets)
    return C.check(C.apply_overrides(cfg, overrides))


def module_hooks(model) -> list:
    """record_function ranges around the decoder's modules, named by what they are (removed after profiling)."""
    import torch

    def kind(name: str) -> str | None:
        if "lora_A" in name or "lora_B" in name:
            return "fwd: LoRA matmuls"
        last = name.rsplit(".", 1)[-1]
        if last == "self_attn":
            return "fwd: attention (with projections)"
        if last == "mlp":
            return "fwd: MLP"
        if last.endswith("norm"):
            return "fwd: norms"
        if last == "embed_tokens":
            return "fwd: embedding"
        return None

    handles = []
    for name, module in model.named_modules():
        label = kind(name)
        if label is None:
            continue

        def pre(_m, _a, label=label):
            _m._studio_rf = torch.autograd.profiler.record_function(label)
            _m._studio_rf.__enter__()

        def post(_m, _a, _o):
            _m._studio_rf.__exit__(None, None, None)

        handles += [module.register_forward_pre_hook(pre), module.register_forward_hook(post)]
    return handles


def run_steps(trainer, steps: int):
    """``steps`` batches, collated once; one unprofiled pass over them to warm up (the heap grown to their size, memory
    touched, kernels chosen: a first pass over a batch runs slower, and the profiler would book that to whichever op
    touched new memory first), one timed unprofiled pass, then one profiled pass. Returns (profiler, seconds per step
    unprofiled, seconds per step profiled, seconds per batch of collation)."""
    import torch
    from torch.profiler import ProfilerActivity, profile, record_function

    model = trainer.model
    model.train()
    opt = trainer.create_optimizer()
    loader = iter(trainer.get_train_dataloader())
    start = time.perf_counter()
    batches = [next(loader) for _ in range(steps)]
    collate = (time.perf_counter() - start) / steps

    def step(batch):
        with record_function("phase: forward"):
            loss = trainer.compute_loss(model, batch)
        with record_function("phase: backward"):
            loss.backward()
        with record_function("phase: optimizer"):
            opt.step()
            opt.zero_grad(set_to_none=True)

    def run_pass() -> float:
        start = time.perf_counter()
        for batch in batches:
            step(batch)
        return (time.perf_counter() - start) / steps

    run_pass()
    plain = run_pass()
    matmuls = onednn_matmuls(run_pass)
    hooks = module_hooks(model)
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        profiled = run_pass()
    for h in hooks:
        h.remove()
    torch.set_grad_enabled(True)
    return prof, plain, profiled, collate, {k: v / steps for k, v in matmuls.items()}


def onednn_matmuls(run_pass) -> dict[str, float]:
    """Milliseconds of oneDNN matmul execution per "MxK:KxN" shape over one unprofiled pass, from oneDNN's own verbose
    log (each primitive's execution time, no profiler in the way): how much of a step the matmuls themselves take."""
    import os
    import torch

    totals: dict[str, float] = defaultdict(float)
    with tempfile.TemporaryFile(mode="w+") as log:
        sys.stdout.flush()
        saved = os.dup(1)
        os.dup2(log.fileno(), 1)  # oneDNN prints from C to fd 1
        try:
            with torch.backends.mkldnn.verbose(torch.backends.mkldnn.VERBOSE_ON):
                run_pass()
        finally:
            sys.stdout.flush()
            os.dup2(saved, 1)
            os.close(saved)
        log.seek(0)
        for line in log:
            f = line.rstrip().split(",")
            if line.startswith("onednn_verbose") and "exec" in f and "matmul" in f:
                totals[f[-2]] += float(f[-1])
    return dict(totals)


def categorize(prof, lora_rank: int, ops: dict | None = None) -> dict[str, float]:
    """Self CPU milliseconds per category (see the module docstring), over all profiled steps; ``ops``, when given,
    also gets them per (category, op, input shapes)."""
    events = list(prof.events())
    phases = [(e.name, e.time_range.start, e.time_range.end) for e in events if e.name.startswith("phase: ")]
    mods = [(e.name, e.time_range.start, e.time_range.end) for e in events if e.name.startswith("fwd: ")]
    totals: dict[str, float] = defaultdict(float)
    for e in events:
        if e.name.startswith(("phase: ", "fwd: ", "ProfilerStep")) or e.name.startswith("autograd::engine"):
            continue
        t = e.time_range.start
        phase = next((n for n, a, b in phases if a <= t <= b), "phase: other")
        ms = e.self_cpu_time_total / 1000
        if phase == "phase: forward":
            inner = [n for n, a, b in mods if a <= t <= b]
            lora = any(n == "fwd: LoRA matmuls" for n in inner)
            label = "fwd: LoRA matmuls" if lora else (inner[-1] if inner else "fwd: LM head + loss")
        elif phase == "phase: backward":
            label = backward_category(e, lora_rank)
        else:
            label = phase.replace("phase: ", "")
        totals[label] += ms
        if ops is not None:
            key = (label, e.name, str([list(s) for s in (e.input_shapes or []) if s]))
            ops[key] = ops.get(key, 0.0) + ms
    return dict(totals)


def backward_category(e, rank: int) -> str:
    name = e.name
    if any(m == name for m in MATMUL):
        shapes = [s for s in (e.input_shapes or []) if s]
        return "bwd: LoRA matmuls" if any(rank in s for s in shapes) else "bwd: matmuls"
    if any(a in name for a in ATTENTION):
        return "bwd: attention"
    if any(h in name for h in HEAD_LOSS):
        return "bwd: LM head + loss (softmax, gather)"
    if name in CASTS:
        return "bwd: dtype casts and copies"
    return "bwd: elementwise and norms"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workload", choices=list(WORKLOADS), default="short")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--markdown", action="store_true")
    ap.add_argument("--top", type=int, default=0, metavar="N", help="also print the N costliest ops with their shapes")
    args = ap.parse_args()
    from studio import allocator
    from studio.engine.models import skip_bitsandbytes

    cfg = config_for(args.workload, args.overrides)
    allocator.reexec_with(cfg.training.allocator)  # profile the process as `studio train` runs it (returns when done)

    skip_bitsandbytes()
    from studio.engine.train import sft

    with tempfile.TemporaryDirectory() as run_dir:
        trainer, _, data = sft.build_trainer(cfg, Path(run_dir), [], log=lambda *a: None)
        prof, plain, seconds, collate, matmuls = run_steps(trainer, args.steps)
    ops: dict = {}
    totals = categorize(prof, cfg.lora.r, ops)
    step_ms = seconds * 1000
    inside = sum(totals.values()) / args.steps
    rows = sorted(((k, v / args.steps) for k, v in totals.items()), key=lambda kv: -kv[1])
    rows.append(("Python and framework overhead (step time outside any op)", max(0.0, step_ms - inside)))
    rows.append(("data collation (timed apart, not in the step)", 1000 * collate))
    tokens = data.report["train_tokens"] / max(1, data.report["train_rows"]) * cfg.training.per_device_train_batch_size
    print(allocator.describe() or f"allocator: {cfg.training.allocator}")
    print(f"workload {args.workload}: {step_ms:.0f} ms a step profiled, {1000 * plain:.0f} ms unprofiled (~{tokens:.0f} "
          f"tokens, {tokens / plain:.0f} tokens/s unprofiled), {args.steps} steps after a warm-up pass over the same "
          f"batches, overrides: {' '.join(args.overrides) or 'none'}")
    if args.markdown:
        print("| where | ms/step | share |\n|---|---:|---:|")
    for name, ms in rows:
        print(f"| {name} | {ms:.0f} | {100 * ms / step_ms:.1f}% |" if args.markdown else
              f"  {name:58s} {ms:8.0f} ms  {100 * ms / step_ms:5.1f}%")
    mm = sum(matmuls.values())
    print(f"oneDNN matmuls, unprofiled (oneDNN's own timings): {mm:.0f} ms a step = {100 * mm / (1000 * plain):.1f}% of "
          f"the {1000 * plain:.0f} ms step" + "".join(f"; {shape} {ms:.0f} ms" for shape, ms in
                                                     sorted(matmuls.items(), key=lambda kv: -kv[1])[:args.top]))
    for (label, op, shapes), ms in sorted(ops.items(), key=lambda kv: -kv[1])[:args.top]:
        print(f"  {ms / args.steps:8.0f} ms/step  {label:36s} {op:28s} {shapes[:90]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
