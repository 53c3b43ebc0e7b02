"""The training process's memory allocator. On the CPU a training step allocates and frees tensors of many MB
(activations, the LM head's slices, their gradients); glibc's malloc maps large blocks fresh and unmaps them when freed,
and trims its heap back to the kernel, so the next step page-faults (and zeroes) the same memory in again. Measured in
one decoder layer's forward and backward, that kernel work took most of the time of the elementwise ops between the
matmuls. Both settings have to be in place before the process starts, so ``python -m studio.train`` re-executes itself
once (same pid, same argv, before anything is written or torch is imported), as Intel's CPU launchers do.

``training.allocator``: ``keep`` (the default: glibc with ``MALLOC_MMAP_MAX_=0``, so no block is mmap'd, and a 1 TiB
``MALLOC_TRIM_THRESHOLD_``, so the heap is never trimmed; on glibc only, and a value the user set stays), ``system`` (glibc as it comes), ``jemalloc`` (LD_PRELOAD;
an error when the library is missing), ``auto`` (jemalloc when found). Measured with
``benchmarks/train_throughput.py --against training.allocator=system`` (3 runs each, alternating; README, Speed):
keep 1.18x on long rows at the same peak RSS. jemalloc held 3.8 GiB at peak against 6.5 GiB but trained 308 tokens/s
against 355: an option for a machine short of memory. The same glibc settings made from inside the process with
``mallopt`` with a 1 GiB trim threshold (56d6de3) measured 1.04x; what differs is that threshold and the moment the
settings are made (which of the two matters was not measured).
"""

from __future__ import annotations

import os
import platform
import sys
from pathlib import Path

from studio.configinput import ConfigError

CANDIDATES = ("/usr/lib/x86_64-linux-gnu/libjemalloc.so.2", "/usr/lib/aarch64-linux-gnu/libjemalloc.so.2",
              "/usr/lib64/libjemalloc.so.2", "/usr/lib/libjemalloc.so.2", "/usr/local/lib/libjemalloc.so.2")
MARK = "STUDIO_ALLOCATOR_DONE"  # set on the re-executed process: never loop
# glibc's malloc told to keep what is freed: no block is mmap'd (so none is unmapped on free and faulted in again),
# and the heap top is never trimmed back to the kernel. Read by glibc at process start, hence the re-execution.
KEEP = {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": str(1 << 40)}


def find_jemalloc() -> str | None:
    return next((p for p in CANDIDATES if Path(p).is_file()), None)


def reexec_with(choice: str) -> None:
    """Re-execute this process under jemalloc when ``choice`` asks for it and it is not loaded yet; returns when nothing
    is to be done. Raises ConfigError for ``jemalloc`` when the library is missing."""
    if choice == "system" or os.environ.get(MARK) or sys.platform != "linux":
        return
    if choice == "keep":
        if platform.libc_ver()[0] == "glibc":  # other C libraries ignore these variables: nothing to gain
            _reexec({**KEEP, **os.environ, MARK: "keep"})  # a value the user set stays theirs
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
    _reexec(dict(os.environ, LD_PRELOAD=f"{lib} {preload}".strip(), **{MARK: lib}))


def _reexec(env: dict) -> None:
    """This process again, same pid and argv, with ``env``."""
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], env)


def describe() -> str | None:
    """One line for the run's log when this process was re-executed for its allocator (any method), else None."""
    mark = os.environ.get(MARK)
    if not mark:
        return None
    return "allocator: glibc keeps freed memory" if mark == "keep" else f"allocator: jemalloc ({mark})"
