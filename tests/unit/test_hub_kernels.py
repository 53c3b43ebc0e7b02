"""Importing the studio turns off code fetched from the Hugging Face Hub (transformers' default kernelization, and the
``kernels`` import bitsandbytes' CPU backend makes at import), unless ``STUDIO_HUB_KERNELS=1``; a user's own
``USE_HUB_KERNELS`` stays theirs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROBE = ("import json, os, sys, importlib.util, studio; "
         "print(json.dumps({'env': os.environ.get('USE_HUB_KERNELS'), 'blocked': 'kernels' in sys.modules "
         "and sys.modules['kernels'] is None, 'found': importlib.util.find_spec('kernels') is not None}))")


def _probe(**env) -> dict:
    base = {k: v for k, v in os.environ.items() if k not in ("USE_HUB_KERNELS", "STUDIO_HUB_KERNELS")}
    out = subprocess.run([sys.executable, "-c", PROBE], env={**base, **env, "PYTHONPATH": str(ROOT)}, cwd=ROOT,
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def test_importing_the_studio_turns_hub_kernels_off():
    assert _probe() == {"env": "NO", "blocked": True, "found": False}


def test_studio_hub_kernels_1_leaves_the_libraries_alone():
    got = _probe(STUDIO_HUB_KERNELS="1")
    assert got["env"] is None and not got["blocked"]


def test_a_users_own_use_hub_kernels_stays():
    got = _probe(USE_HUB_KERNELS="YES")
    assert got["env"] == "YES" and not got["blocked"]
