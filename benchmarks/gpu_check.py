"""The GPU check: the methods that matter on an accelerator, each for a few steps on the default model, in one table.

    bash benchmarks/gpu_check.sh            # on a machine with one CUDA GPU: at most ~8 minutes
    bash benchmarks/gpu_check.sh --cpu      # the same table on the CPU, smaller (CI and machines without a GPU)

Rows: LoRA SFT, QLoRA 4-bit SFT (bitsandbytes), full fine-tuning, DPO (LoRA), each a ``studio train`` child on a preset
with ``training.max_steps`` set; then the throughput benchmark against plain TRL (benchmarks/train_throughput.py, one run
per side on the short workload). Per row: what ran (device, dtype, attention, Liger), steps, seconds, trained tokens/s,
peak memory (GPU: torch's max allocated; CPU: peak RSS) and the last loss. A row that fails prints its reason and the
table goes on.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ROWS = (("LoRA SFT", "sft_lora", []), ("QLoRA 4-bit SFT", "sft_qlora", ["quantization.bits=4"]),
        ("full fine-tuning", "sft_full", []), ("DPO (LoRA)", "dpo", []))


def device_line() -> str:
    import torch

    if not torch.cuda.is_available():
        return f"CPU ({os.cpu_count()} cores), torch {torch.__version__}"
    p = torch.cuda.get_device_properties(0)
    return f"{p.name} ({p.total_memory / 2**30:.0f} GiB), torch {torch.__version__}, CUDA {torch.version.cuda}"


def run_preset(preset: str, sets: list[str], steps: int, work: Path) -> dict:
    run = work / preset
    argv = [sys.executable, "-m", "studio.train", str(ROOT / "presets" / f"{preset}.yaml"), f"--output-dir={run}",
            "--set", f"training.max_steps={steps}", "--set", "training.logging_steps=1", "--set", "identity.probe=false"]
    argv += [a for s in sets for a in ("--set", s)]
    start = time.time()
    proc = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    seconds = time.time() - start
    if proc.returncode:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["?"]
        return {"error": tail[0][:160], "seconds": seconds}
    metrics = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines() if x.strip()]
    train = [m for m in metrics if m.get("kind") == "train"]
    summary = next((m for m in metrics if m.get("kind") == "summary"), {})
    tps = [m["tokens_per_s"] for m in train if m.get("tokens_per_s")]
    log = (run / "train.log").read_text(errors="replace")
    return {"seconds": seconds, "steps": summary.get("step") or (train[-1]["step"] if train else 0),
            "train_s": summary.get("train_runtime"), "tokens_per_s": sorted(tps)[len(tps) // 2] if tps else None,
            "loss": train[-1].get("loss") if train else None, "memory": peak_memory_line(log),
            "speed": next((ln.split("speed: ", 1)[1] for ln in log.splitlines() if "speed: " in ln), "")}


def peak_memory_line(log: str) -> str:
    for line in reversed(log.splitlines()):
        if "peak memory" in line:
            return line.split("peak memory", 1)[1].strip(" :")
    return ""


def throughput(cpu: bool) -> str:
    argv = [sys.executable, str(ROOT / "benchmarks" / "train_throughput.py"), "--runs", "1", "--workloads", "short"]
    proc = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("short")]
    return "\n".join(lines) if proc.returncode == 0 else f"failed: {(proc.stderr.strip().splitlines() or ['?'])[-1]}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cpu", action="store_true", help="run on the CPU with fewer steps (no GPU needed)")
    ap.add_argument("--steps", type=int, default=0, help="steps per row (default: 30 on a GPU, 3 on the CPU)")
    args = ap.parse_args()
    import torch

    if args.cpu:
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
    elif not torch.cuda.is_available():
        print("no CUDA GPU here: run with --cpu for the CPU table", file=sys.stderr)
        return 2
    steps = args.steps or (3 if args.cpu else 30)
    print(f"gpu_check {time.strftime('%Y-%m-%d')}: {'CPU' if args.cpu else device_line()}, {steps} steps a row")
    print("| method | steps | seconds | tokens/s | last loss | peak memory | speed paths |\n|---|---:|---:|---:|---:|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for label, preset, sets in ROWS:
            r = run_preset(preset, sets, steps, Path(tmp))
            if "error" in r:
                print(f"| {label} | – | {r['seconds']:.0f} | – | – | – | failed: {r['error']} |", flush=True)
                continue
            tps = f"{r['tokens_per_s']:.0f}" if r["tokens_per_s"] else "–"
            loss = f"{r['loss']:.3f}" if r["loss"] is not None else "–"
            print(f"| {label} | {r['steps']} | {r['seconds']:.0f} | {tps} | {loss} | {r['memory'] or '–'} | "
                  f"{r['speed'] or 'library defaults'} |", flush=True)
    print("\nthroughput vs plain TRL (short workload, one run a side; the full comparison is train_throughput.py --runs 3):")
    print(throughput(args.cpu))
    return 0


if __name__ == "__main__":
    sys.exit(main())
