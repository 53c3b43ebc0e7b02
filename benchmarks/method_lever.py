"""One speed lever on the other trainer methods: each method's shipped preset through ``studio train``, the studio's
defaults (A) against the same with ``--set`` overrides (B), alternating A B, B A, A B, each run its own process.

    python benchmarks/method_lever.py --set training.bf16_adapters=false [--methods dpo,kto] [--runs 3]

Per method it prints the median and spread of the trainer's own ``train_runtime`` (the steps, not the model load), the
final training loss, the load average before each run and the CPU other processes used during it, and ``A/B=X.XX`` (B's median seconds over A's: above 1, the
defaults are faster). ``--steps`` caps every preset at that many optimizer steps so a series stays short.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

from train_throughput import ROOT, run_child, studio_result


def one_run(preset: str, sets: list[str], steps: int, out: Path) -> dict:
    argv = [sys.executable, "-m", "studio.train", str(ROOT / "presets" / f"{preset}.yaml"), f"--output-dir={out}",
            "--set", f"training.max_steps={steps}"] + [a for s in sets for a in ("--set", s)]
    r = run_child(argv)  # the throughput benchmark's runner: wall, peak RSS, load before, others' CPU share
    r.update(studio_result(out))
    log = (out / "train.log").read_text(errors="replace")
    r["speed"] = next((ln.split("speed: ", 1)[1] for ln in log.splitlines() if "speed: " in ln), "none")
    return {"seconds": r["train_seconds"], "loss": r["final_loss"], "load_before": r["load_before"],
            "others": r["others_cores"], "speed": r["speed"]}


def series(preset: str, sets: list[str], runs: int, steps: int, work: Path) -> dict:
    got: dict[str, list[dict]] = {"A": [], "B": []}
    for i in range(runs):
        for side in (("A", "B") if i % 2 == 0 else ("B", "A")):
            r = one_run(preset, sets if side == "B" else [], steps, work / f"{preset}-{side}-{i}")
            got[side].append(r)
            print(f"  {preset} run {i + 1}/{runs} {side} {r['seconds']:6.1f} s  loss {r['loss']:.4f}  load before "
                  f"{r['load_before']:.2f}  others {r['others']:.2f} cores  speed paths: {r['speed']}", flush=True)
    med = {s: statistics.median(r["seconds"] for r in rs) for s, rs in got.items()}
    return {"median_s": med, "spread_s": {s: (min(r["seconds"] for r in rs), max(r["seconds"] for r in rs))
                                          for s, rs in got.items()},
            "loss": {s: statistics.median(r["loss"] for r in rs) for s, rs in got.items()}, "ratio": med["B"] / med["A"]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--set", dest="sets", action="append", required=True, metavar="KEY=VALUE", help="side B's overrides")
    ap.add_argument("--methods", default="dpo,kto", help="presets/<name>.yaml, comma-separated")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--steps", type=int, default=8)
    args = ap.parse_args()
    print(f"A: the defaults; B: {' '.join(args.sets)}; {args.steps} steps a run; load average {os.getloadavg()[0]:.2f}; "
          f"{os.cpu_count()} CPUs", flush=True)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for preset in args.methods.split(","):
            results[preset] = series(preset, args.sets, args.runs, args.steps, Path(tmp))
    for preset, r in results.items():
        (a_lo, a_hi), (b_lo, b_hi) = r["spread_s"]["A"], r["spread_s"]["B"]
        print(f"{preset:13s} A {r['median_s']['A']:6.1f} s ({a_lo:.1f}-{a_hi:.1f})  B {r['median_s']['B']:6.1f} s "
              f"({b_lo:.1f}-{b_hi:.1f})  loss A {r['loss']['A']:.4f} B {r['loss']['B']:.4f}  A/B={r['ratio']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
