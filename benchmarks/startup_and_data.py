"""How fast the studio answers: ``python launch.py`` to its first HTTP 200, and a 100k-row JSONL opened and paged in the
Data tab's engine. These figures depend on the machine and its load, so they are measured here, not asserted in tests.

    python benchmarks/startup_and_data.py [--runs 3]

Prints one line per measure: median, min and max over the runs, and the load average before the first run.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def startup_seconds(home: Path, timeout: float = 180) -> float:
    port = free_port()
    env = dict(os.environ, STUDIO_HOME=str(home), PYTHONUNBUFFERED="1")
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "launch.py", "--port", str(port)], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        while time.perf_counter() - start < timeout:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as r:
                    if r.status == 200:
                        return time.perf_counter() - start
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("no HTTP 200")
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def open_100k_seconds(folder: Path) -> float:
    from studio.engine.data import view as ds

    path = folder / "big.jsonl"
    if not path.exists():
        with open(path, "w", encoding="utf-8") as fh:
            for i in range(100_000):
                fh.write(json.dumps({"instruction": f"Question number {i}?", "input": "", "output": f"Answer {i}."}) + "\n")
    start = time.perf_counter()
    view = ds.open_dataset(path)
    ds.page(view, 4000, 25)
    return time.perf_counter() - start


def report(name: str, values: list[float]) -> None:
    print(f"{name}: median {statistics.median(values):.2f} s (min {min(values):.2f}, max {max(values):.2f}, "
          f"{len(values)} runs)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    print(f"load average before: {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory() as tmp:
        report("launch.py to HTTP 200", [startup_seconds(Path(tmp) / "home") for _ in range(args.runs)])
        report("100k-row JSONL open + page", [open_100k_seconds(Path(tmp)) for _ in range(args.runs)])
    return 0


if __name__ == "__main__":
    sys.exit(main())
