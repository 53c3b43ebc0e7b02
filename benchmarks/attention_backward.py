"""One packed row's causal attention, forward plus backward, two ways: SDPA alone (its flash kernel's backward) and the
studio's ``fast_paths._RowAttention`` (SDPA's forward, the backward as matmuls and a softmax), over row lengths.

    python benchmarks/attention_backward.py [--heads 9 --kv-heads 3 --head-dim 64 --dtype bfloat16 --lengths 64,128,...]

The default shape is the default model's (SmolLM2-135M: 9 query and 3 key/value heads of 64, bf16 on a CPU). It prints
the median of ``--reps`` calls per length for each path, their ratio, and the largest gradient difference relative to
an fp32 reference: what ``fast_paths.MATH_BACKWARD_MAX`` was chosen from. It runs under the training process's
allocator (``training.allocator=keep``).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def timed(fn, q, k, v, grad, reps: int) -> float:
    """Median milliseconds of forward plus backward."""
    import torch

    times = []
    for i in range(reps + 2):
        start = time.perf_counter()
        torch.autograd.grad(fn(q, k, v), (q, k, v), grad)
        if i >= 2:  # two warm-up calls
            times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--heads", type=int, default=9)
    ap.add_argument("--kv-heads", type=int, default=3)
    ap.add_argument("--head-dim", type=int, default=64)
    ap.add_argument("--dtype", default="bfloat16", choices=("bfloat16", "float32"))
    ap.add_argument("--lengths", default="32,64,128,256,384,512,768,1024")
    ap.add_argument("--reps", type=int, default=15)
    args = ap.parse_args()
    from studio import allocator

    allocator.reexec_with("keep")  # the training process's allocator (returns once it is in place)
    import torch
    import torch.nn.functional as F

    from studio.engine.train.fast_paths import MATH_BACKWARD_MAX, _RowAttention

    dtype = getattr(torch, args.dtype)
    scale = args.head_dim ** -0.5
    sdpa = lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True, scale=scale)  # noqa: E731
    ours = lambda q, k, v: _RowAttention.apply(q, k, v, scale)  # noqa: E731
    print(f"{args.heads} query / {args.kv_heads} key-value heads of {args.head_dim}, {args.dtype}, "
          f"{torch.get_num_threads()} threads; the studio uses the matmul backward up to {MATH_BACKWARD_MAX} tokens")
    print(f"{'tokens':>7} {'SDPA ms':>9} {'matmul bwd ms':>14} {'speed-up':>9} {'grad err SDPA':>14} {'grad err ours':>14}")
    torch.manual_seed(0)
    for n in (int(x) for x in args.lengths.split(",")):
        q, k, v = (torch.randn(1, h, n, args.head_dim, dtype=dtype, requires_grad=True)
                   for h in (args.heads, args.kv_heads, args.kv_heads))
        grad = torch.randn(1, args.heads, n, args.head_dim, dtype=dtype)
        ref_in = [t.detach().float().requires_grad_() for t in (q, k, v)]
        ref = torch.autograd.grad(sdpa(*ref_in), ref_in, grad.float())

        def err(fn) -> float:
            got = torch.autograd.grad(fn(q, k, v), (q, k, v), grad)
            return max(((a.float() - b).abs().max() / b.abs().max()).item() for a, b in zip(got, ref))

        a, b = timed(sdpa, q, k, v, grad, args.reps), timed(ours, q, k, v, grad, args.reps)
        print(f"{n:>7} {a:>9.2f} {b:>14.2f} {a / b:>8.2f}x {err(sdpa):>14.4f} {err(ours):>14.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
