"""How fast the data doctor examines a large dataset, and whether it finds what was planted.

    python benchmarks/data_doctor.py [--rows 100000] [--model default] [--sample 2000]

Writes ``--rows`` alpaca rows (English and Chinese, seeded) with known problems planted: 1 % exact copies of another
row, 1 % near copies (one word changed in a ~40-word answer), empty answers, literal "nan", one-character answers,
answers that repeat their question. Opens the file as the Data tab does and runs ``doctor.examine`` on every row
(the cut-answer check tokenizes ``--sample`` evenly spaced rows with ``--model``'s template and renders in full
those longer than ``--cutoff-len``; ``--model none`` skips it).
Prints the wall time and this process's CPU time (open + examine; on a shared machine the CPU time is the steadier
figure), each flag's count, and how many planted rows each check found.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

WORDS = ("river mountain lantern harbor meadow copper violin orbit canyon ember glacier pepper saddle thunder velvet "
         "whistle garden bridge candle desert falcon granite island jungle kettle ladder marble needle oyster pillow "
         "quartz rocket silver tunnel umbrella valley window yellow zephyr anchor basket cactus dragon engine").split()
HANZI = "山水风云花草树木日月星辰江河湖海春夏秋冬东南西北天地人和金木水火土光明清风雨雪"


def make_rows(n: int, seed: int = 0) -> tuple[list[dict], dict[str, set[int]]]:
    rng = random.Random(seed)
    rows, planted = [], {k: set() for k in ("exact", "near", "empty", "null", "short", "echo")}
    for i in range(n):
        if i >= 10 and rng.random() < 0.01:
            rows.append(dict(rows[rng.randrange(i)]))
            planted["exact"].add(i)
            continue
        if i >= 10 and rng.random() < 0.01:
            src = dict(rows[rng.randrange(i)])
            words = src["output"].split(" ")
            if len(words) >= 30:
                words[rng.randrange(len(words))] = "changed"
                rows.append(dict(src, output=" ".join(words)))
                planted["near"].add(i)
                continue
        zh = rng.random() < 0.3
        q = ("".join(rng.choices(HANZI, k=12)) + "？") if zh else " ".join(rng.choices(WORDS, k=10)) + "?"
        a = "".join(rng.choices(HANZI, k=60)) if zh else " ".join(rng.choices(WORDS, k=40)) + "."
        kind = rng.random()
        if kind < 0.002:
            a, key = " ", "empty"
        elif kind < 0.004:
            a, key = "nan", "null"
        elif kind < 0.006:
            a, key = "k", "short"
        elif kind < 0.008:
            a, key = q, "echo"
        else:
            key = None
        if key:
            planted[key].add(i)
        rows.append({"instruction": q, "input": "", "output": a})
    return rows, planted


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=100_000)
    p.add_argument("--model", default="none", help="tokenizer for the cut-answer check ('none': skip it)")
    p.add_argument("--sample", type=int, default=2000)
    p.add_argument("--cutoff-len", type=int, default=1024, help="the cut-answer check's cutoff (default 1024)")
    args = p.parse_args()
    from studio.engine.data import doctor
    from studio.engine.data import view as ds

    rows, planted = make_rows(args.rows)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "big.jsonl"
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
        tok = None
        if args.model != "none":
            from studio.engine.models import load_tokenizer

            tok = load_tokenizer(args.model)
        start, cpu = time.perf_counter(), time.process_time()
        report = doctor.examine(ds.open_dataset(path), tokenizer=tok, cutoff_len=args.cutoff_len, token_sample=args.sample)
        wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    print(f"data doctor: {args.rows} rows in {wall:.1f} s, {cpu:.1f} s of CPU (open + examine; examine alone "
          f"{report['seconds']:.1f} s; "
          f"cut-answer check on {args.sample} rows at cutoff_len={args.cutoff_len} with {args.model}); "
          f"load average {__import__('os').getloadavg()[0]:.1f}")
    for flag, count in report["counts"].items():
        print(f"  {flag:16} {count}")
    flags = {k: set(v) for k, v in report["flags"].items()}
    found = {"exact": flags["exact_duplicate"], "near": flags["near_duplicate"] | flags["exact_duplicate"],
             "empty": flags["empty_turn"] | flags["invalid"], "null": flags["null_text"], "short": flags["short_answer"],
             "echo": flags["echo"]}
    for key, rows_planted in planted.items():
        hit = len(rows_planted & found[key])
        print(f"  planted {key:6} {hit}/{len(rows_planted)} found")
    return 0


if __name__ == "__main__":
    sys.exit(main())
