"""The Train tab's fit-and-time estimate: ``python -m studio.train CONFIG --plan`` in a child process, its JSON read back.

The UI process never loads a model for it (the child does: meta-device model, data preparation, the 3-step micro-run);
the page gets the same JSON a user gets from ``studio train CONFIG --plan``. Pure standard library + studio.config.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

from studio import config as config_mod
from studio.engine.access import Access

TIMEOUT_S = 1800  # a self-cognition plan micro-runs the probes too: minutes on a small CPU


class PlanError(RuntimeError):
    """The plan could not be made; the message is the child's own error line."""


def plan_argv(config_path: Path, python: str = sys.executable, micro: bool = True) -> list[str]:
    """The command the page runs (argv, no shell): the same ``--plan`` a user types, on a saved config file."""
    return [python, "-m", "studio.train", str(Path(config_path).absolute()), "--plan"] + ([] if micro else ["--no-micro-run"])


def run_plan(cfg: config_mod.RunConfig, *, access: Access, micro: bool = True, python: str = sys.executable,
             timeout: float = TIMEOUT_S) -> dict:
    """Validate ``cfg`` (``access``: what the page may name and run, see engine/access.py), write it to a temporary
    config file and run the plan child; its JSON object, or PlanError with the child's last error line."""
    config_mod.check(cfg)
    access.config(cfg)
    with tempfile.TemporaryDirectory(prefix="studio-plan-") as tmp:
        path = Path(tmp) / "config.yaml"
        config_mod.save(cfg, path)
        try:
            res = subprocess.run(plan_argv(path, python, micro), capture_output=True, text=True, timeout=timeout,
                                 stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise PlanError(f"the estimate took longer than {timeout:.0f} s and was stopped") from None
    lines = res.stdout.strip().splitlines()
    if res.returncode != 0 or not lines:
        errors = [x for x in res.stderr.splitlines() if x.startswith("error:")] or res.stderr.strip().splitlines()[-1:]
        raise PlanError((errors[-1] if errors else f"exit code {res.returncode}").removeprefix("error: "))
    try:
        return json.loads(lines[-1])
    except ValueError:
        raise PlanError(f"unreadable plan output: {lines[-1][:200]}") from None
