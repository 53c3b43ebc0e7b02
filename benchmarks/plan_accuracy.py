"""Is the plan right? For each preset: the estimate (``studio train PRESET --plan``) against the run itself (peak RSS
and wall time of ``studio train PRESET``), both with the same short ``training.max_steps``.

    python benchmarks/plan_accuracy.py                                   # every preset in presets/, 10 steps each
    python benchmarks/plan_accuracy.py --presets sft_lora,dpo --max-steps 10 --home /tmp/bench-home

Every run is shortened to ``--max-steps`` optimizer steps (a benchmark shortcut: a full preset takes minutes to an
hour here); the plan is asked about that same shortened run. The measured peak is the training process's own
``ru_maxrss`` (``os.wait4``), the wall time from its start to its exit. A line passes when both estimates are within
``--tolerance`` (default 25 %) of the measurement. Run it on a quiet machine: times measured while other jobs run
are not comparable (the plan's micro-run and the run itself would see different loads).
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

ROOT = Path(__file__).resolve().parents[1]


def run(argv: list[str], env: dict) -> tuple[int, float, int, str]:
    """(exit code, wall seconds, peak RSS bytes, stdout) of one child."""
    start = time.time()
    proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, time.time() - start, int(usage.ru_maxrss) * 1024, out


def measure(preset: str, steps: int, env: dict, tmp: Path, model: str = "") -> dict:
    base = [sys.executable, "-m", "studio", "train", str(ROOT / "presets" / f"{preset}.yaml"),
            "--set", f"training.max_steps={steps}"] + (["--set", f"model.name_or_path={model}"] if model else [])
    code, plan_s, _, out = run(base + ["--plan"], env)
    if code != 0 or not out.strip():
        return {"preset": preset, "error": f"--plan exited {code}"}
    plan = json.loads(out.strip().splitlines()[-1])
    code, wall, peak, _ = run(base + [f"--output-dir={tmp / preset}"], env)
    status = json.loads((tmp / preset / "status.json").read_text()) if (tmp / preset / "status.json").is_file() else {}
    if code != 0 or status.get("state") != "finished" or status.get("step") != steps:
        return {"preset": preset, "error": f"training exited {code}, state {status.get('state')}, step "
                                           f"{status.get('step')} of {steps} (see {tmp / preset / 'train.log'})"}
    return {"preset": preset, "plan_seconds": round(plan_s, 1), "est_peak": plan["peak_memory_bytes"], "peak": peak,
            "est_eta": plan.get("eta_seconds"), "wall": round(wall, 1), "fits": plan["fits"],
            "source": plan.get("peak_source")}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--presets", default="", help="comma-separated preset names (default: every presets/*.yaml)")
    p.add_argument("--max-steps", type=int, default=10, help="optimizer steps per run (default 10)")
    p.add_argument("--tolerance", type=float, default=0.25)
    p.add_argument("--home", default="", help="STUDIO_HOME for the runs (default: a temporary one)")
    p.add_argument("--model", default="", help="another model.name_or_path for every preset (default: the preset's)")
    p.add_argument("--keep", default="", help="keep the run folders here (default: a temporary folder, removed)")
    args = p.parse_args()
    names = [x for x in args.presets.split(",") if x] or sorted(f.stem for f in (ROOT / "presets").glob("*.yaml"))
    print(f"plan accuracy: {len(names)} presets, each run with training.max_steps={args.max_steps} (a shortcut; the "
          f"plan is asked about the same shortened run); load average {os.getloadavg()[0]:.1f}", flush=True)
    print(f"{'preset':16} {'est peak':>9} {'peak':>9} {'ratio':>6} {'est eta':>8} {'wall':>7} {'ratio':>6}  result")
    failed = 0
    with tempfile.TemporaryDirectory(prefix="plan-bench-") as scratch:
        tmp = args.keep or scratch
        env = dict(os.environ, STUDIO_HOME=args.home or str(Path(tmp) / "home"), PYTHONPATH=str(ROOT))
        for name in names:
            r = measure(name, args.max_steps, env, Path(tmp), args.model)
            if "error" in r:
                failed += 1
                print(f"{name:16} error: {r['error']}", flush=True)
                continue
            mem = r["est_peak"] / r["peak"]
            tim = (r["est_eta"] or 0) / r["wall"]
            ok = abs(mem - 1) <= args.tolerance and abs(tim - 1) <= args.tolerance
            failed += not ok
            print(f"{name:16} {r['est_peak'] / 1e9:8.2f}G {r['peak'] / 1e9:8.2f}G {mem:6.2f} {r['est_eta'] or 0:7.0f}s "
                  f"{r['wall']:6.0f}s {tim:6.2f}  {'ok' if ok else 'OFF'} (plan took {r['plan_seconds']:.0f} s, "
                  f"peak from the {r['source']}; load average {os.getloadavg()[0]:.1f})", flush=True)
    print(f"{len(names) - failed} of {len(names)} within {args.tolerance:.0%} on both")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
