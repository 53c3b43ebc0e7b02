"""training.allocator: with keep (glibc settings) or jemalloc (or auto and the library present) the training process
re-executes itself once under it."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from studio import allocator
from studio.configinput import ConfigError


def test_nothing_to_do_for_system_or_once_done(monkeypatch):
    monkeypatch.setattr(os, "execve", lambda *a: pytest.fail("must not re-execute"))
    allocator.reexec_with("system")
    monkeypatch.setenv(allocator.MARK, "/x/libjemalloc.so.2")
    allocator.reexec_with("auto")


def test_jemalloc_asked_for_but_missing_is_a_named_error(monkeypatch):
    monkeypatch.delenv(allocator.MARK, raising=False)
    monkeypatch.setattr(allocator, "CANDIDATES", ("/nonexistent/libjemalloc.so.2",))
    monkeypatch.setattr(os, "execve", lambda *a: pytest.fail("must not re-execute"))
    allocator.reexec_with("auto")  # auto: the system allocator, silently
    with pytest.raises(ConfigError, match="libjemalloc2"):
        allocator.reexec_with("jemalloc")


@pytest.mark.skipif(allocator.find_jemalloc() is None or sys.platform != "linux", reason="no libjemalloc.so.2 here")
def test_the_process_runs_again_under_jemalloc_with_the_same_pid_and_argv(tmp_path):
    script = tmp_path / "child.py"
    script.write_text(
        "import os, sys\n"
        "first = not os.environ.get('STUDIO_ALLOCATOR_DONE')\n"
        "if first:\n    print('pid', os.getpid(), flush=True)\n"
        "from studio import allocator\n"
        "allocator.reexec_with('auto')\n"
        "maps = open('/proc/self/maps').read()\n"
        "print('pid', os.getpid(), 'argv', sys.argv[1:], 'jemalloc', 'jemalloc' in maps)\n")
    env = {k: v for k, v in os.environ.items() if k not in (allocator.MARK, "LD_PRELOAD")}
    out = subprocess.run([sys.executable, str(script), "a", "--b=c"], capture_output=True, text=True, env=env,
                         timeout=60).stdout.splitlines()
    assert len(out) == 2, out
    assert out[0].split()[1] == out[1].split()[1]  # exec: the same process
    assert out[1].endswith("argv ['a', '--b=c'] jemalloc True")


@pytest.mark.skipif(sys.platform != "linux", reason="glibc's malloc settings")
def test_keep_runs_the_process_again_with_glibc_told_to_keep_freed_memory(tmp_path):
    script = tmp_path / "child.py"
    script.write_text(
        "import os, sys\n"
        "from studio import allocator\n"
        "print('pid', os.getpid(), os.environ.get('MALLOC_MMAP_MAX_'), os.environ.get('MALLOC_TRIM_THRESHOLD_'), flush=True)\n"
        "allocator.reexec_with('keep')\n"
        "print('argv', sys.argv[1:])\n")
    env = {k: v for k, v in os.environ.items() if k not in (allocator.MARK, *allocator.KEEP)}
    out = subprocess.run([sys.executable, str(script), "a", "--b=c"], capture_output=True, text=True, env=env,
                         timeout=60).stdout.splitlines()
    assert len(out) == 3, out  # once as started, once re-executed, then on
    first, second = out[0].split(), out[1].split()
    assert first[1] == second[1] and first[2:] == ["None", "None"]  # the same process, first without the settings
    assert second[2:] == ["0", str(1 << 40)] and out[2] == "argv ['a', '--b=c']"
    # a value the user set is kept
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60,
                         env={**env, "MALLOC_TRIM_THRESHOLD_": "12345"}).stdout.splitlines()
    assert out[1].split()[2:] == ["0", "12345"], out
