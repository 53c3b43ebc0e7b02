"""Studio engine vs a plain TRL script, side by side: trained tokens per second on two workloads, alternating A/B.

    python benchmarks/train_throughput.py [--runs 3] [--workloads short,long] [--model default]
    python benchmarks/train_throughput.py --workloads short --against training.labeled_lm_head=false   # one lever
    python benchmarks/train_throughput.py --workloads long --against-commit 03bb8a4   # this code against a commit

Workloads (benchmarks/workloads.py): ``short`` = 3 epochs of a 90-row identity set, cutoff 128, batch 8; ``long`` = 32
multi-turn conversations of ~500 tokens, 1 epoch, cutoff 1024, batch 4. Both sides get the same model (the default model's
converted folder), the same rows, LoRA r8/alpha 16 on all linear layers, lr 5e-4, seed 0. The plain side is TRL's
``SFTTrainer`` with TRL's defaults (benchmarks/plain_trl_sft.py); the studio side is ``python -m studio.train`` with the
studio's defaults. Each run is its own process.

For each workload the sides alternate (A B, B A, A B, ...) ``--runs`` times each. Before each run the load average is
recorded, and during it the CPU time of every other process on the machine: a run during which others used more than
``--noisy`` of a core is marked noisy. The machine's matmul peak (bf16 and fp32, 2048^3) is measured in the same run.

Printed per side: median and spread (min-max) of trained tokens/s (every non-pad token a step computes on; the same count
for both sides), achieved GFLOP/s and % of the bf16 peak (4 x non-embedding parameters x tokens: forward plus the backward
to the activations of a frozen base), peak RSS and final train loss; then ``ratio=X.XX`` per workload (median over median).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from workloads import WORKLOADS, Workload, token_counts, write  # noqa: E402

LR, LORA_R, LORA_ALPHA, SEED = 5e-4, 8, 16, 0


def matmul_peak(dtype_name: str, n: int = 2048, reps: int = 5) -> float:
    """GFLOP/s of an n^3 matmul in this process (all cores), best of ``reps``."""
    import torch

    dtype = getattr(torch, dtype_name)
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b
    best = float("inf")
    for _ in range(reps):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * n ** 3 / best / 1e9


def cpu_ticks() -> int:
    """Busy clock ticks of the whole machine so far (/proc/stat: user+nice+system+irq+softirq+steal)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return sum(fields) - fields[3] - fields[4]  # minus idle and iowait


def run_child(argv: list[str], env: dict | None = None, cwd: Path = ROOT) -> dict:
    """Run one training process; its stdout, wall time, own CPU seconds, peak RSS, and other processes' CPU share."""
    hz = os.sysconf("SC_CLK_TCK")
    load, ticks, start = os.getloadavg()[0], cpu_ticks(), time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=cwd,
                            env=dict(os.environ, **(env or {})))
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status):
        raise SystemExit(f"{' '.join(argv[:6])} ... failed with exit code {os.waitstatus_to_exitcode(status)}")
    own = usage.ru_utime + usage.ru_stime
    others = max(0.0, (cpu_ticks() - ticks) / hz - own) / wall
    return {"stdout": out, "wall": wall, "rss_mib": usage.ru_maxrss / 1024, "load_before": load, "others_cores": others}


def studio_argv(w: Workload, model: str, data: Path, out: Path) -> list[str]:
    sets = [f"model.name_or_path={model}", f"data.datasets=[{data}]", f"lora.r={LORA_R}", f"lora.alpha={LORA_ALPHA}",
            "lora.target_modules=all-linear", f"training.cutoff_len={w.cutoff}",
            f"training.per_device_train_batch_size={w.batch}", f"training.learning_rate={LR}",
            f"training.num_train_epochs={w.epochs}", "training.logging_steps=1", "training.lr_scheduler_type=linear",
            f"training.seed={SEED}", f"data.train_on_prompt={'true' if w.turns > 1 else 'false'}"]
    return [sys.executable, "-m", "studio.train", f"--output-dir={out}"] + [a for s in sets for a in ("--set", s)]


def studio_result(out: Path) -> dict:
    metrics = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    summary = next(m for m in metrics if m.get("kind") == "summary")
    return {"train_seconds": summary["train_runtime"], "final_loss": summary["train_loss"]}


def plain_argv(w: Workload, model: str, data: Path, out: Path) -> list[str]:
    return [sys.executable, str(ROOT / "benchmarks" / "plain_trl_sft.py"), model, str(data), str(out), str(LR),
            str(w.epochs), str(w.cutoff), str(w.batch), str(LORA_R), str(LORA_ALPHA), str(SEED)]


def one_run(side: str, w: Workload, model: str, files: dict, work: Path, i: int, against: list[str] = (),
            against_root: Path | None = None) -> dict:
    """One run of one side. With ``against`` (``--against KEY=VALUE``), the B side is the studio with those overrides
    instead of plain TRL: one lever measured against the studio's defaults, the same way. With ``against_root`` (a
    checkout of ``--against-commit``), the B side is the studio's code at that commit, run from there."""
    out = work / f"{side}-{w.name}-{i}"
    b_side = side != "studio"
    if not b_side or against or against_root:
        extra = [a for s in (against if b_side else ()) for a in ("--set", s)]
        root = against_root if b_side and against_root else ROOT  # `python -m` runs the studio found in its cwd
        r = run_child(studio_argv(w, model, files["messages"], out) + extra, {"PYTHONPATH": str(root)}, cwd=root)
        r.update(studio_result(out))
    else:
        r = run_child(plain_argv(w, model, files["messages" if w.turns > 1 else "prompt_completion"], out))
        r.update(json.loads(r["stdout"].strip().splitlines()[-1]))
    r.pop("stdout", None)
    return r


def checkout(rev: str, where: Path) -> Path:
    """A detached git worktree of ``rev`` at ``where`` (removed again by the caller)."""
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(where), rev], check=True,
                   capture_output=True, text=True)
    return where


def summarize(runs: list[dict], tokens: float, flops_per_token: float, peak_bf16: float, noisy: float) -> dict:
    tps = [tokens / r["train_seconds"] for r in runs]
    med = statistics.median(tps)
    return {"tokens_per_s": med, "min": min(tps), "max": max(tps), "gflops": med * flops_per_token / 1e9,
            "pct_peak": 100 * med * flops_per_token / 1e9 / peak_bf16, "rss_mib": max(r["rss_mib"] for r in runs),
            "final_loss": statistics.median(r["final_loss"] for r in runs),
            "noisy": sum(r["others_cores"] > noisy for r in runs), "runs": len(runs),
            "load_before": [round(r["load_before"], 2) for r in runs],
            "others_cores": [round(r["others_cores"], 2) for r in runs]}


def flops_per_token(model_dir: str) -> float:
    from transformers import AutoConfig

    c = AutoConfig.from_pretrained(model_dir)
    per_layer = 4 * c.hidden_size * c.hidden_size * (1 + c.num_key_value_heads / c.num_attention_heads) / 2 \
        + 3 * c.hidden_size * c.intermediate_size
    body = c.num_hidden_layers * per_layer + c.hidden_size * c.vocab_size  # + the LM head
    return 4 * body  # forward 2x, backward to the activations 2x (frozen weights: no weight gradients)


def bench(w: Workload, model: str, runs: int, work: Path, peak_bf16: float, noisy: float, against: list[str] = (),
          against_root: Path | None = None) -> dict:
    from transformers import AutoTokenizer

    files = write(w, work / "data")
    counts = token_counts(w, AutoTokenizer.from_pretrained(model))
    tokens = counts["tokens_per_epoch"] * w.epochs
    order = [("studio", "plain") if i % 2 == 0 else ("plain", "studio") for i in range(runs)]
    results: dict[str, list[dict]] = {"studio": [], "plain": []}
    for i, pair in enumerate(order):
        for side in pair:
            r = one_run(side, w, model, files, work, i, against, against_root)
            results[side].append(r)
            print(f"  {w.name} run {i + 1}/{runs} {side:6s} {tokens / r['train_seconds']:7.1f} tokens/s  "
                  f"train {r['train_seconds']:6.1f} s  loss {r['final_loss']:.4f}  load before {r['load_before']:.2f}  "
                  f"others {r['others_cores']:.2f} cores", flush=True)
    fpt = flops_per_token(model)
    out = {side: summarize(rs, tokens, fpt, peak_bf16, noisy) for side, rs in results.items()}
    out["tokens"] = tokens
    out["ratio"] = out["studio"]["tokens_per_s"] / out["plain"]["tokens_per_s"]
    out["loss_gap_pct"] = 100 * abs(out["studio"]["final_loss"] - out["plain"]["final_loss"]) / out["plain"]["final_loss"]
    return out


def report(name: str, res: dict) -> None:
    for side in ("studio", "plain"):
        s = res[side]
        print(f"{name:5s} {side:6s} tokens/s median {s['tokens_per_s']:7.1f} (min {s['min']:.1f}, max {s['max']:.1f}, "
              f"{s['runs']} runs, {s['noisy']} noisy)  {s['gflops']:6.1f} GFLOP/s = {s['pct_peak']:4.1f}% of bf16 peak  "
              f"peak RSS {s['rss_mib']:.0f} MiB  final loss {s['final_loss']:.4f}")
    print(f"{name:5s} loss gap {res['loss_gap_pct']:.2f}%  tokens per run {res['tokens']:.0f}")
    print(f"{name}: ratio={res['ratio']:.2f}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--workloads", default="short,long")
    ap.add_argument("--model", default="default")
    ap.add_argument("--noisy", type=float, default=0.15, help="others' CPU (in cores) above which a run is noisy")
    ap.add_argument("--json", default="", help="also write the results here")
    ap.add_argument("--against", action="append", default=[], metavar="KEY=VALUE",
                    help="compare the studio with itself under these overrides instead of with plain TRL (a lever); "
                         "'plain' in the output is then that variant")
    ap.add_argument("--against-commit", default="", metavar="REV",
                    help="compare the studio with its own code at this git commit (checked out in a temporary worktree, "
                         "with the same defaults and --against overrides) instead of with plain TRL")
    args = ap.parse_args()
    from studio.engine.models import resolve_model

    model = resolve_model(args.model)
    peak = {d: matmul_peak(d) for d in ("bfloat16", "float32")}
    print(f"matmul peak: bf16 {peak['bfloat16']:.0f} GFLOP/s, fp32 {peak['float32']:.0f} GFLOP/s; "
          f"load average {os.getloadavg()[0]:.2f}; {os.cpu_count()} CPUs", flush=True)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = checkout(args.against_commit, Path(tmp) / "against") if args.against_commit else None
        try:
            for name in args.workloads.split(","):
                results[name] = bench(WORKLOADS[name], model, args.runs, Path(tmp), peak["bfloat16"], args.noisy,
                                      args.against, root)
        finally:
            if root:
                subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(root)], check=False)
    if args.against or args.against_commit:
        print("B side ('plain' below): the studio" + (f" at commit {args.against_commit}" if args.against_commit else "")
              + (" with " + " ".join(args.against) if args.against else ""))
    for name, res in results.items():
        report(name, res)
    if args.json:
        Path(args.json).write_text(json.dumps({"peak": peak, "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
