"""The labeled LM head's passes over one slice of [positions x vocabulary] logits, compiled into fused loops.

``fast_paths._LabeledLogProbs`` projects CHUNK positions at a time onto the vocabulary (49,152 columns for SmolLM2).
In eager PyTorch every step after that matmul is its own pass over the slice, most of them over a fresh 50 MB fp32
copy: the cast to fp32, max, subtract, exp, the sums, and in backward the cast, subtract, exp, scale, scatter and the
cast back. Profiled on long rows (benchmarks/PROFILE.md, After 4) those passes took about twice the head's matmuls.
``torch.compile`` (inductor; generated C++ with a vectorised exp on CPU) turns each function below into one or two
loops that read the bf16 logits directly and never materialise the fp32 slice.

Compiling needs a C++ compiler and Python's headers, and costs ~10 s the first time on this CPU (inductor caches it
on disk, ~2-4 s per process after that). When compiling fails the callers run their eager passes and the reason is
logged once (``failure()``); nothing about the results changes but the time.
"""

from __future__ import annotations

import torch

_compiled: dict = {}  # per process: the training process compiles each function once
_failure: list[str] = []


def slice_stats(logits: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Per row of ``logits`` [n, V] (any float dtype) and ``targets`` [n]: log Z, log p(target), entropy,
    log sum p^2, mean logit and argmax, computed in fp32."""
    x = logits.float()
    top, idx = x.max(dim=-1, keepdim=True)
    q = x - top
    p = q.exp()
    sum_p = p.sum(-1)
    log_s = sum_p.log()
    log_p = q.gather(-1, targets.unsqueeze(-1)).squeeze(-1) - log_s
    entropy = log_s - (p * q).sum(-1) / sum_p
    log_sum_sq = (p * p).sum(-1).log() - 2 * log_s
    mean_logits = q.mean(-1) + top.squeeze(-1)
    return top.squeeze(-1) + log_s, log_p, entropy, log_sum_sq, mean_logits, idx.squeeze(-1)


def slice_grad(logits: torch.Tensor, log_z: torch.Tensor, grad: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """d(sum_i grad_i * log p_i(target_i)) / d logits = grad * (onehot(target) - softmax), in the logits' dtype."""
    cols = torch.arange(logits.shape[-1], device=logits.device)
    x = (cols == targets.unsqueeze(-1)).float() - (logits.float() - log_z.unsqueeze(-1)).exp()
    return (x * grad.unsqueeze(-1).float()).to(logits.dtype)


def run(fn, *args):
    """``fn(*args)`` compiled, or None when compiling failed here (then the caller's eager passes run)."""
    if _failure:
        return None
    try:
        if fn not in _compiled:
            _compiled[fn] = torch.compile(fn)
        return _compiled[fn](*args)
    except Exception as exc:  # a missing compiler or headers surfaces here, on the first call
        _failure.append(f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}")
        print(f"speed: compiled LM head unavailable, eager passes instead ({_failure[0]})", flush=True)
        return None


def failure() -> str | None:
    """Why compiling failed in this process, or None."""
    return _failure[0] if _failure else None
