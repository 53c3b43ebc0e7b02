"""The training process's memory allocator. On the CPU a training step allocates and frees tensors of hundreds of MB
(activations, LM-head logits); glibc's malloc hands every block over 32 MB back to the kernel when it is freed, so the
next one is page-faulted in again. jemalloc keeps freed memory for reuse. It has to be in place before the process
starts, so ``python -m studio.train`` re-executes itself once with ``LD_PRELOAD`` (same pid, same argv, before anything
is written or torch is imported), as Intel's CPU launchers do.

``training.allocator``: ``reuse`` (the default: glibc's malloc told to serve large blocks from its heap and keep what is
freed, ``mallopt``, no re-execution), ``system`` (glibc as it comes), ``jemalloc`` (an error when the library is
missing), ``auto`` (jemalloc when found). The LM head's slices ([256 x vocabulary] fp32, 50 MB on the default model)
are over glibc's 32 MB mmap ceiling, so under ``system`` each one is mapped, page-faulted and unmapped again, several
times a step; the README (Speed) has the side-by-side figures. Measured (``benchmarks/train_throughput.py --workloads long --against training.allocator=system``,
3 runs each, alternating): jemalloc held 3.8 GiB at peak against 6.5 GiB, but trained 308 tokens/s against 355, so it
is an option for a machine short of memory, not the default.
"""

from __future__ import annotations

import ctypes
import os
import sys
from pathlib import Path

from studio.configinput import ConfigError

CANDIDATES = ("/usr/lib/x86_64-linux-gnu/libjemalloc.so.2", "/usr/lib/aarch64-linux-gnu/libjemalloc.so.2",
              "/usr/lib64/libjemalloc.so.2", "/usr/lib/libjemalloc.so.2", "/usr/local/lib/libjemalloc.so.2")
MARK = "STUDIO_ALLOCATOR_DONE"  # set on the re-executed process: never loop


def find_jemalloc() -> str | None:
    return next((p for p in CANDIDATES if Path(p).is_file()), None)


M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4  # glibc's <malloc.h>


def keep_freed_blocks() -> bool:
    """glibc: large blocks from the heap (no mmap per block) and freed memory kept (no trimming), so the next step's
    tensors reuse pages already faulted in. False where the C library is not glibc (nothing changed)."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(M_MMAP_MAX, 0)) and bool(mallopt(M_TRIM_THRESHOLD, 1 << 30))


def reexec_with(choice: str) -> None:
    """Set up ``choice``: ``reuse`` in place; re-execute this process under jemalloc when it asks for that and it is
    not loaded yet; returns when nothing (more) is to be done. Raises ConfigError for ``jemalloc`` when it is missing."""
    if choice == "reuse" and sys.platform == "linux":
        keep_freed_blocks()
        return
    if choice in ("system", "reuse") or os.environ.get(MARK) or sys.platform != "linux":
        return
    lib = find_jemalloc()
    if lib is None:
        if choice == "jemalloc":
            raise ConfigError("training.allocator=jemalloc: libjemalloc.so.2 not found (Debian: apt-get install "
                             "libjemalloc2); use auto or system")
        return
    preload = os.environ.get("LD_PRELOAD", "")
    if "jemalloc" in preload:
        return
    env = dict(os.environ, LD_PRELOAD=f"{lib} {preload}".strip(), **{MARK: lib})
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], env)
