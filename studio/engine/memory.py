"""Memory of this process and of this machine: what the trainer logs each step (RSS, GPU memory) and what the plan
compares its estimate with (total and available RAM, the GPU's memory).

Pure standard library on Linux (``/proc``); torch is imported only when a caller asks about a GPU and torch is already
loaded, so the UI process can read RAM figures without it.
"""

from __future__ import annotations

import os
import resource
import sys
from pathlib import Path

PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def rss_bytes() -> int:
    """Resident memory of this process now (0 where /proc is missing)."""
    try:
        return int(Path("/proc/self/statm").read_text().split()[1]) * PAGE
    except (OSError, ValueError, IndexError):
        return 0


def peak_rss_bytes(children: bool = False) -> int:
    """The most resident memory this process (or its waited-for children) ever held: Linux reports KiB."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN if children else resource.RUSAGE_SELF)
    return int(usage.ru_maxrss) * (1 if sys.platform == "darwin" else 1024)


def ram() -> dict:
    """{"total_bytes", "available_bytes"} of this machine (MemAvailable: what can be used without swapping)."""
    info = {}
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            key, _, rest = line.partition(":")
            if key in ("MemTotal", "MemAvailable"):
                info[key] = int(rest.split()[0]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    if "MemTotal" not in info and hasattr(os, "sysconf"):
        info["MemTotal"] = os.sysconf("SC_PHYS_PAGES") * PAGE
    return {"total_bytes": info.get("MemTotal", 0), "available_bytes": info.get("MemAvailable", info.get("MemTotal", 0))}


def gpu() -> dict | None:
    """{"name", "total_bytes", "free_bytes", "allocated_bytes", "peak_allocated_bytes"} of GPU 0, or None without one
    (or when torch is not loaded in this process: a GPU question never imports it)."""
    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_available():
        return None
    free, total = torch.cuda.mem_get_info(0)
    return {"name": torch.cuda.get_device_name(0), "total_bytes": int(total), "free_bytes": int(free),
            "allocated_bytes": int(torch.cuda.memory_allocated(0)),
            "peak_allocated_bytes": int(torch.cuda.max_memory_allocated(0))}


def step_record() -> dict:
    """What the trainer adds to each metrics line: RSS now and, on a GPU, the memory torch holds there (now and peak)."""
    out = {"rss_bytes": rss_bytes()}
    g = gpu()
    if g is not None:
        out.update(gpu_mem_bytes=g["allocated_bytes"], gpu_peak_bytes=g["peak_allocated_bytes"])
    return out
