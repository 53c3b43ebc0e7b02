"""How the self-cognition probe's batch size sets the time of the tuned side's answers (same answers at every size).

    python benchmarks/probe_batching.py RUN_DIR [--sizes 96,32,48] [--rounds 2] [--split test]

RUN_DIR is a finished self-cognition run (its adapter/). The adapter is merged as the probe does, then the tuned side
answers the probe's identity questions (with the probe's identity budget) and general questions at each batch size,
the sizes alternating round by round; printed per size: seconds for each part and whether every answer equals the first
size's. Chose ``probe.IDENTITY_BATCH_SIZE`` (32) and ``probe.BATCH_SIZE`` (96, the general answers).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run_dir")
    ap.add_argument("--sizes", default="96,32,48")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--split", default="test")
    args = ap.parse_args()
    from studio.config import load as load_config
    from studio.engine.generate import ChatModel
    from studio.engine.selfcog import probe as P
    from studio.engine.selfcog.identity import default_system_of, names_from

    run = Path(args.run_dir)
    cfg = load_config(run / "config.yaml")
    names = names_from(cfg.identity.name_zh, cfg.identity.name_en, cfg.identity.author_zh, cfg.identity.author_en)
    chat = ChatModel(cfg.model.name_or_path, adapter=run)
    items = P.probe_items(args.split, default_system_of(chat.tokenizer))
    items = sorted(items, key=lambda it: len(json.dumps(it["messages"], ensure_ascii=False)))
    parts = {"identity": ([it["messages"] for it in items if it["kind"] == "identity"], P.identity_budget(chat.tokenizer, names)),
             "general": ([it["messages"] for it in items if it["kind"] == "general"], P.MAX_NEW_TOKENS)}
    sizes = [int(s) for s in args.sizes.split(",")]
    seconds: dict = {(s, part): [] for s in sizes for part in parts}
    reference, same = {}, {s: True for s in sizes}
    print(f"load average {os.getloadavg()[0]:.2f}; {', '.join(f'{k}: {len(v[0])} questions' for k, v in parts.items())}")
    with P._merged(chat):
        for _ in range(args.rounds):
            for size in sizes:
                for part, (convs, budget) in parts.items():
                    start = time.time()
                    answers = chat.generate(convs, use_adapter=True, max_new_tokens=budget, batch_size=size)
                    seconds[size, part].append(time.time() - start)
                    same[size] &= answers == reference.setdefault(part, answers)
    for size in sizes:
        row = "  ".join(f"{part} {statistics.median(seconds[size, part]):6.1f} s "
                        f"({min(seconds[size, part]):.1f}-{max(seconds[size, part]):.1f})" for part in parts)
        print(f"batch {size:4d}: {row}  same answers: {same[size]}")
    print(f"load average after {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
