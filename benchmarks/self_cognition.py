"""Self-cognition end to end: run presets/self_cognition.yaml with a name/author, print the time and both probe scores.

    python benchmarks/self_cognition.py --name-zh 小新 --name-en Nova --author-zh 新星实验室 --author-en "Nova Labs"
    python benchmarks/self_cognition.py --cold            # also regenerate the cached replay and base-probe answers
    python benchmarks/self_cognition.py --set training.num_train_epochs=2 --set lora.r=8   # try another setting

It starts the same command a user runs (``python -m studio.train PRESET --set ...``) in a fresh run folder, so the time
includes start-up, data, training and both probes. Targets on a 2-core CPU: <= 300 s, identity >= 90% per language,
retention >= 90%. The machine is often shared: the CPU time and load average are printed next to the wall time.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--name-zh", default="小新")
    p.add_argument("--name-en", default="Nova")
    p.add_argument("--author-zh", default="新星实验室")
    p.add_argument("--author-en", default="Nova Labs")
    p.add_argument("--preset", default=str(ROOT / "presets" / "self_cognition.yaml"))
    p.add_argument("--set", dest="overrides", action="append", default=[], help="extra SECTION.KEY=VALUE overrides")
    p.add_argument("--output-dir", help="run folder (default: a new temporary folder)")
    p.add_argument("--cold", action="store_true", help="delete cached replay / base-probe answers first")
    args = p.parse_args()

    if args.cold:
        sys.path.insert(0, str(ROOT))
        from studio.paths import studio_home

        for f in list((studio_home() / "cache").glob("replay-*")) + list((studio_home() / "cache").glob("probe-base-*")):
            f.unlink()
    run_dir = Path(args.output_dir or tempfile.mkdtemp(prefix="self-cognition-"))
    sets = [f"identity.name_zh={args.name_zh}", f"identity.name_en={args.name_en}", f"identity.author_zh={args.author_zh}",
            f"identity.author_en={args.author_en}"] + args.overrides
    cmd = [sys.executable, "-m", "studio.train", args.preset, "--output-dir", str(run_dir)]
    for s in sets:
        cmd += ["--set", s]
    print("$ " + " ".join(cmd), flush=True)
    load_before = os.getloadavg()[0]
    start = time.time()
    code = subprocess.call(cmd, cwd=ROOT)
    wall = time.time() - start
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    report(run_dir, code, wall, usage.ru_utime + usage.ru_stime, load_before, os.getloadavg()[0])
    return code


def report(run_dir: Path, code: int, wall: float, cpu: float, load_before: float, load_after: float) -> None:
    pct = lambda v: "-" if v is None else f"{100 * v:.0f}%"  # noqa: E731
    print(f"\nrun folder: {run_dir}  exit code {code}")
    print(f"time: {wall:.0f} s wall (target <= 300), {cpu:.0f} s CPU; load average {load_before:.1f} -> {load_after:.1f}")
    probe_path = run_dir / "probe.json"
    if not probe_path.is_file():
        print("no probe.json: see train.log")
        return
    probe = json.loads(probe_path.read_text(encoding="utf-8"))
    metrics = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text(encoding="utf-8").splitlines() if line]
    train_s = max((m.get("elapsed", 0) for m in metrics), default=0)
    print(f"phases: training {train_s:.0f} s, probes {probe['seconds']:.0f} s, rest (start-up, data) "
          f"{wall - train_s - probe['seconds']:.0f} s")
    ident, ret = probe["identity"], probe["retention"]
    for lang, v in ident["per_lang"].items():
        print(f"identity {lang}: base {pct(v['base'])} -> tuned {pct(v['tuned'])} ({v['n']} held-out questions)")
    print(f"retention: {pct(ret['score'])} ({ret['kept']} of {ret['base_right']} general questions the base got right; "
          + ", ".join(f"{lang} {pct(v['score'])} of {v['base_right']}" for lang, v in ret["per_lang"].items()) + ")")
    misses = [r for r in probe["rows"] if not r["tuned_ok"] and (r["kind"] == "identity" or r["base_ok"])]
    for r in misses:
        print(f"  miss [{r['kind']}/{r['lang']}] {r['question']} -> {r['tuned_answer'][:100]!r}")


if __name__ == "__main__":
    sys.exit(main())
