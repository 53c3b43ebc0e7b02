"""``setup.sh`` installs a Chinese font where the system has none (Chinese labels render as boxes without one).

The font step runs alone with ``bash setup.sh --fonts``; fake ``fc-list``, ``apt-get`` and ``id`` on PATH stand in for
the system, so nothing is installed here."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def run_fonts(tmp_path: Path, fonts: str, uid: int) -> tuple[subprocess.CompletedProcess, str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "apt.log"
    scripts = {"fc-list": f"#!/bin/sh\nprintf '%s' '{fonts}'\n",
               "apt-get": f"#!/bin/sh\necho \"$@\" >> {log}\n",
               "id": f"#!/bin/sh\necho {uid}\n"}
    for name, text in scripts.items():
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    env = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}")
    res = subprocess.run(["bash", "setup.sh", "--fonts"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    return res, log.read_text() if log.exists() else ""


@pytest.mark.parametrize("uid", [0, 1000])
def test_a_font_is_installed_only_where_none_covers_chinese(tmp_path, uid):
    res, apt = run_fonts(tmp_path, "", uid)
    assert res.returncode == 0, res.stderr
    if uid == 0:
        assert "install -y -qq fonts-wqy-microhei" in apt and "installed a Chinese font" in res.stdout
    else:
        assert apt == "" and "apt-get install fonts-wqy-microhei" in res.stderr


def test_nothing_is_installed_when_a_chinese_font_is_there(tmp_path):
    res, apt = run_fonts(tmp_path, "/usr/share/fonts/wqy-microhei.ttc: WenQuanYi Micro Hei", 0)
    assert res.returncode == 0 and apt == "" and res.stdout == res.stderr == ""
