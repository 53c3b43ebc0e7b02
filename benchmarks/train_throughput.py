"""Studio engine vs a plain TRL script: the same small self-cognition SFT, trained tokens per second.

Default model, LoRA r8 all-linear, cutoff 128, batch 8, the same identity rows and steps for both; one run each, in one
process tree, so both see the same machine. Prints tokens/s (non-padding tokens), peak RSS and losses for each, and last
a line ``ratio=X.XX`` (studio / plain). Run: ``python benchmarks/train_throughput.py [--steps 10] [--repeat 1]``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def make_data(out: Path, rows: int) -> Path:
    """Prompt/completion chat rows: TRL computes completion-only loss on them, like the studio's assistant-only loss."""
    from studio.engine.selfcog.identity import fill_placeholders, load_identity_templates

    filled = fill_placeholders(load_identity_templates(), "小星", "Nova", "星辰实验室", "Star Lab")
    filled = (filled * (rows // len(filled) + 1))[:rows]
    with open(out, "w", encoding="utf-8") as fh:
        for r in filled:
            fh.write(json.dumps({"prompt": [{"role": "user", "content": r["instruction"]}],
                                 "completion": [{"role": "assistant", "content": r["output"]}]}, ensure_ascii=False) + "\n")
    return out


def run_child(argv: list[str]) -> tuple[str, float]:
    """Run a command, return its stdout and its own peak RSS in MiB."""
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=ROOT)
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise SystemExit(f"{argv[:4]} failed with exit code {proc.returncode}")
    return out, usage.ru_maxrss / 1024


def studio_run(model: str, data: Path, work: Path, lr: float, steps: int) -> dict:
    run_dir = work / "studio_run"
    sets = [f"model.name_or_path={model}", f"data.datasets=[{data}]", "lora.r=8", "lora.alpha=16",
            "lora.target_modules=all-linear", "training.cutoff_len=128", "training.per_device_train_batch_size=8",
            f"training.learning_rate={lr}", f"training.max_steps={steps}", "training.logging_steps=1",
            "training.lr_scheduler_type=linear", "training.seed=0"]
    argv = [sys.executable, "-m", "studio.train", "--output-dir", str(run_dir)] + [a for s in sets for a in ("--set", s)]
    _, rss = run_child(argv)
    metrics = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    summary = next(m for m in metrics if m.get("kind") == "summary")
    last = [m for m in metrics if m.get("kind") == "train"][-1]
    return {"train_seconds": summary["train_runtime"], "tokens": last["num_tokens"], "train_loss": summary["train_loss"],
            "last_loss": last["loss"], "rss_mib": rss}


def plain_run(model: str, data: Path, work: Path, lr: float, steps: int) -> dict:
    out, rss = run_child([sys.executable, str(ROOT / "benchmarks" / "plain_trl_sft.py"), model, str(data),
                          str(work / "plain_run"), str(lr), str(steps)])
    result = json.loads(out.strip().splitlines()[-1])
    result["rss_mib"] = rss
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--lr", type=float, default=2e-4)
    ap.add_argument("--model", default="default")
    args = ap.parse_args()
    from studio.engine.models import resolve_model

    model = resolve_model(args.model)  # both runs read the same converted folder
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        data = make_data(work / "identity.jsonl", rows=8 * args.steps)
        results = {"studio": studio_run(model, data, work, args.lr, args.steps),
                   "plain_trl": plain_run(model, data, work, args.lr, args.steps)}
    for name, r in results.items():
        r["tokens_per_s"] = r["tokens"] / r["train_seconds"]
        print(f"{name:10s} tokens/s={r['tokens_per_s']:7.1f}  tokens={r['tokens']:.0f}  train_s={r['train_seconds']:6.1f}  "
              f"peak_rss={r['rss_mib']:6.0f} MiB  train_loss={r['train_loss']:.4f}  last_loss={r['last_loss']:.4f}")
    loss_gap = abs(results["studio"]["train_loss"] - results["plain_trl"]["train_loss"]) / results["plain_trl"]["train_loss"]
    print(f"loss_gap={100 * loss_gap:.1f}%")
    print(f"ratio={results['studio']['tokens_per_s'] / results['plain_trl']['tokens_per_s']:.2f}")


if __name__ == "__main__":
    main()
