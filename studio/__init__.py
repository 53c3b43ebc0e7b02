"""Tuning Studio.

Importing the package makes one process-wide choice: nothing fetches code from the Hugging Face Hub to run it. Since
transformers 5.2x, ``from_pretrained`` "kernelizes" models with Hub kernels by default and transformers depends on
``kernels``; and bitsandbytes' CPU backend (0.50) calls ``kernels.get_kernel`` when it is imported on a CPU with
avx512_bf16 (peft and transformers import it whenever it is installed), which downloads a compiled kernel from the Hub
and loads it into the process, and with no network reaches out anyway. So, unless ``STUDIO_HUB_KERNELS=1``:
``USE_HUB_KERNELS=NO`` (transformers' own switch; inherited by every child process, and a value the user set stays),
and a ``None`` entry for ``kernels`` in ``sys.modules``, so that ``import kernels`` fails cleanly and bitsandbytes keeps
its own kernels.
"""

import os as _os
import sys as _sys

if _os.environ.get("STUDIO_HUB_KERNELS") != "1":
    _os.environ.setdefault("USE_HUB_KERNELS", "NO")
    if _os.environ["USE_HUB_KERNELS"].upper() in ("NO", "0", "FALSE", "OFF") and "kernels" not in _sys.modules:
        _sys.modules["kernels"] = None
