"""Two faster paths for training on CPU (and any device without Triton), each exact up to floating-point rounding.

1. Packed rows, attended one by one (``use_packed_attention``). Padding-free batches put every row of a batch into one
   sequence told apart by ``position_ids``. Transformers' SDPA path then builds a block-diagonal mask over the whole pack,
   so attention costs (sum of row lengths)^2 instead of sum(row length^2), with a dense mask that keeps SDPA off its fast
   causal kernel. The studio's attention function cuts the pack at the row boundaries the collator already computed
   (``cu_seq_lens_q``) and runs causal SDPA on each row: no mask, no cross-row work. On a CPU, rows of up to 512 tokens
   can take their attention backward as plain matmuls and a softmax (``_RowAttention``), which is faster there than
   SDPA's flash backward (not exact: the usual rounding of a different order of operations).

2. The LM head on trained positions only (``use_labeled_lm_head``). TRL's trainers call ``model(..., fused_lm_head=True)``
   for per-token log-probabilities. Without Triton its implementation scores every position (prompt and padding too),
   folds each vocabulary tile in several fp32 passes and recomputes the projection in fp32 during backward. The studio's
   forward projects only the positions whose label is not -100, in the weights' dtype (bf16 where the frozen base is
   bf16), takes log-softmax in fp32, and lets autograd reuse the saved logits. It returns the same fields TRL reads
   (log_probs, entropy, is_top1, label_mask, loss), so SFT, DPO, KTO, GRPO and RLOO all take it.

3. LoRA adapters computed in bfloat16 over a bfloat16 base (``use_bf16_adapters``; not exact: bf16 rounding). PEFT keeps
   the adapters' weights in float32 over a bfloat16 base (``autocast_adapter_dtype``) so that optimizer updates are not
   rounded away, and to match them it casts every activation entering an adapter to float32 and the result back: on CPU
   a large share of a step. Here the decoder runs under ``torch.autocast`` (bfloat16) with PEFT's own switch
   ``cast_input_dtype_enabled`` off, so the small adapter weights are cast to bfloat16 instead of the activations; the
   weights, their gradients and the optimizer stay float32.
"""

from __future__ import annotations

import functools
import types

import torch
import torch.nn.functional as F

PACKED = "studio_packed_sdpa"
PACKED_MATH = "studio_packed_sdpa_math_backward"
# above this many logits the labeled head would hold too much fp32 memory: fall back to TRL's chunked kernel
MAX_LOGITS = 1 << 29


# -- 1. packed rows ---------------------------------------------------------------------------------------------------------


MATH_BACKWARD_MAX = 512  # rows up to this long: attention's backward as matmuls + softmax (see _RowAttention)


class _RowAttention(torch.autograd.Function):
    """Causal attention of one row: forward by SDPA (its flash kernel), backward as plain matmuls and a softmax on the
    [heads, L, L] scores, recomputed from q, k, v (nothing L x L is kept between forward and backward). On a CPU, SDPA's
    flash backward runs many tiny blocked matmuls with a fixed cost per call, which this beats on short rows; past
    MATH_BACKWARD_MAX tokens its L x L fp32 passes cost more (``benchmarks/attention_backward.py`` times both)."""

    @staticmethod
    def forward(ctx, query, key, value, scale):
        ctx.save_for_backward(query, key, value)
        ctx.scale = scale
        return F.scaled_dot_product_attention(query, key, value, is_causal=True, scale=scale,
                                              enable_gqa=query.shape[1] != key.shape[1])

    @staticmethod
    def backward(ctx, grad_out):
        q, k, v = ctx.saved_tensors
        b, heads, n, d = q.shape
        groups = heads // k.shape[1]
        kk, vv = k.repeat_interleave(groups, 1), v.repeat_interleave(groups, 1)
        scores = torch.matmul(q, kk.transpose(-1, -2)).float().mul_(ctx.scale)
        scores.masked_fill_(torch.ones(n, n, dtype=torch.bool, device=q.device).triu_(1), float("-inf"))
        probs = torch.softmax(scores, dim=-1)
        grad_v = torch.matmul(probs.to(q.dtype).transpose(-1, -2), grad_out)
        grad_p = torch.matmul(grad_out, vv.transpose(-1, -2)).float()
        # softmax backward (dS = P * (dP - rowsum(dP * P))) by the op torch.softmax's own autograd calls, then the scale
        grad_s = torch._softmax_backward_data(grad_p, probs, -1, torch.float32).mul_(ctx.scale).to(q.dtype)
        grad_q = torch.matmul(grad_s, kk)
        grad_k = torch.matmul(grad_s.transpose(-1, -2), q)
        if groups > 1:  # each key/value head served `groups` query heads: sum their gradients
            grad_k = grad_k.view(b, k.shape[1], groups, n, d).sum(2)
            grad_v = grad_v.view(b, k.shape[1], groups, n, d).sum(2)
        return grad_q, grad_k, grad_v, None


def _attend_row(module, query, key, value, dropout: float, scaling, math_backward: bool):
    """One packed row, causal, as [batch, L, heads, head_dim] like transformers' attention functions return."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    n = query.shape[2]
    if (math_backward and dropout == 0 and 1 < n <= MATH_BACKWARD_MAX and torch.is_grad_enabled()
            and query.device.type == "cpu" and query.shape[-1] == value.shape[-1]):
        scale = scaling if scaling is not None else query.shape[-1] ** -0.5
        return _RowAttention.apply(query, key, value, scale).transpose(1, 2).contiguous()
    return sdpa_attention_forward(module, query, key, value, None, dropout=dropout, scaling=scaling, is_causal=True)[0]


def packed_sdpa_forward(module, query, key, value, attention_mask, dropout: float = 0.0, scaling=None,
                        math_backward: bool = False, **kwargs):
    """Causal SDPA per packed row when the batch is one padding-free pack with ``cu_seq_lens_q``; else plain SDPA.
    ``math_backward``: rows up to MATH_BACKWARD_MAX tokens take _RowAttention's backward (CPU only)."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    cu = kwargs.pop("cu_seq_lens_q", None)
    kwargs.pop("cu_seq_lens_k", None)
    if cu is None or query.shape[0] != 1 or attention_mask is not None or query.shape[2] != key.shape[2]:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs)
    bounds = cu.tolist()
    outs = [_attend_row(module, query[:, :, s:e], key[:, :, s:e], value[:, :, s:e], dropout, scaling, math_backward)
            for s, e in zip(bounds[:-1], bounds[1:]) if e > s]
    return (outs[0] if len(outs) == 1 else torch.cat(outs, dim=1)), None


def packed_math_backward_forward(*args, **kwargs):
    """packed_sdpa_forward with short rows' attention backward as matmuls (registered under its own name)."""
    return packed_sdpa_forward(*args, math_backward=True, **kwargs)


def use_packed_attention(model, math_backward: bool = False) -> None:
    """Switch ``model`` (a transformers model using SDPA) to the per-row attention above, with short rows' backward as
    matmuls when ``math_backward``. Only for padding-free batches: the function ignores attention masks it is not
    given, and no mask is built for it."""
    from transformers import AttentionInterface

    name = PACKED_MATH if math_backward else PACKED
    AttentionInterface.register(name, packed_math_backward_forward if math_backward else packed_sdpa_forward)
    target = model.get_base_model() if hasattr(model, "get_base_model") else model
    if getattr(target.config, "_attn_implementation", None) in ("sdpa", PACKED, PACKED_MATH):
        target.set_attn_implementation(name)


# -- 2. the LM head on trained positions ----------------------------------------------------------------------------------


CHUNK = 256  # positions projected at a time: bounds the fp32 logits held at once to CHUNK x vocabulary


class _LabeledLogProbs(torch.autograd.Function):
    """log p(target) per position through the LM head, in slices of CHUNK positions, saving only the hidden states and
    log Z for backward (which projects each slice again): the full [n, V] fp32 logits are never held, so the memory
    traffic of materialising, casting and keeping them for autograd goes away (it dominated the head's time on long rows)."""

    @staticmethod
    def forward(ctx, hidden, weight, targets, outputs):
        h = hidden.detach().to(weight.dtype)
        n = h.shape[0]
        log_z = torch.empty(n, dtype=torch.float32, device=h.device)
        out = {"log_probs": torch.empty_like(log_z)}
        for key in ("entropy", "log_sum_sq_probs", "mean_logits"):
            if key in outputs:
                out[key] = torch.empty_like(log_z)
        if "is_top1" in outputs:
            out["is_top1"] = torch.empty(n, dtype=torch.bool, device=h.device)
        metrics = len(out) > 1
        for s in range(0, n, CHUNK):
            e = min(n, s + CHUNK)
            logits = F.linear(h[s:e], weight.detach()).float()
            tgt = targets[s:e].unsqueeze(-1)
            if not metrics:
                log_z[s:e] = lz = torch.logsumexp(logits, dim=-1)
                out["log_probs"][s:e] = logits.gather(-1, tgt).squeeze(-1) - lz
                continue
            _slice_metrics(logits, tgt, s, e, log_z, out)
        ctx.save_for_backward(h, weight, targets, log_z)
        ctx.hidden_dtype = hidden.dtype
        keys = _keys(outputs)
        ctx.mark_non_differentiable(*(out[k] for k in keys[1:]))
        return tuple(out[k] for k in keys)

    @staticmethod
    def backward(ctx, grad_lp, *_metrics):
        h, weight, targets, log_z = ctx.saved_tensors
        want_h, want_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        grad_h = torch.empty(h.shape, dtype=ctx.hidden_dtype, device=h.device) if want_h else None
        grad_w = torch.zeros(weight.shape, dtype=torch.float32, device=h.device) if want_w else None
        for s in range(0, h.shape[0], CHUNK):
            e = min(h.shape[0], s + CHUNK)
            g = grad_lp[s:e].float()
            # d log p(t) / d logits = onehot(t) - softmax
            grad_logits = F.linear(h[s:e], weight).float().sub_(log_z[s:e].unsqueeze(-1)).exp_().mul_(-g.unsqueeze(-1))
            grad_logits.scatter_add_(-1, targets[s:e].unsqueeze(-1), g.unsqueeze(-1))
            grad_logits = grad_logits.to(weight.dtype)
            if want_h:
                grad_h[s:e] = (grad_logits @ weight).to(ctx.hidden_dtype)
            if want_w:
                grad_w += (grad_logits.t() @ h[s:e]).float()
        return grad_h, (grad_w.to(weight.dtype) if want_w else None), None, None


def _slice_metrics(logits: torch.Tensor, tgt: torch.Tensor, s: int, e: int, log_z: torch.Tensor, out: dict) -> None:
    """log Z, log p(target) and the requested metrics of one slice of fp32 logits, which it overwrites. One max pass
    (which is also the argmax), one exp into a second buffer, then row-wise dot products: entropy = log S - sum(e q) / S
    and sum p^2 = sum(e e) / S^2 for q = logits - max, e = exp(q), S = sum(e). Computing log p, exp(log p) and their
    product as separate full [slice x vocabulary] tensors took more time than log p itself, for metrics only logged."""
    top, idx = logits.max(dim=-1)
    q = logits.sub_(top.unsqueeze(-1))
    p = q.exp()
    sum_p = p.sum(-1)
    log_s = sum_p.log()
    log_z[s:e] = top + log_s
    out["log_probs"][s:e] = q.gather(-1, tgt).squeeze(-1) - log_s
    if "entropy" in out:
        out["entropy"][s:e] = log_s - torch.bmm(p.unsqueeze(1), q.unsqueeze(2)).view(-1) / sum_p
    if "log_sum_sq_probs" in out:
        out["log_sum_sq_probs"][s:e] = torch.bmm(p.unsqueeze(1), p.unsqueeze(2)).view(-1).log() - 2 * log_s
    if "mean_logits" in out:
        out["mean_logits"][s:e] = q.mean(-1) + top
    if "is_top1" in out:
        out["is_top1"][s:e] = idx == tgt.squeeze(-1)


def labeled_log_probs(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, outputs: tuple[str, ...]) -> dict:
    """{"log_probs": log p(target), and the metrics in ``outputs``: entropy, log_sum_sq_probs, mean_logits, is_top1}
    for hidden [n, H], weight [V, H], targets [n]. Only log_probs carries a gradient."""
    values = _LabeledLogProbs.apply(hidden, weight, targets, tuple(outputs))
    return dict(zip(_keys(outputs), values))


def _keys(outputs) -> tuple[str, ...]:
    """The fields labeled_log_probs returns, in the order _LabeledLogProbs computes them."""
    return ("log_probs",) + tuple(k for k in ("entropy", "log_sum_sq_probs", "mean_logits", "is_top1") if k in outputs)


def use_labeled_lm_head(model, outputs: tuple[str, ...] = ("log_probs", "entropy", "is_top1")) -> bool:
    """Replace the fused LM head TRL installed on ``model`` (or its PEFT base) with the labeled one; False when the model
    has no TRL head, or a temperature/softcap/scale this path does not handle (TRL's stays)."""
    from trl.trainer.utils import FusedCausalLMOutput

    target = model.get_base_model() if hasattr(model, "get_base_model") else model
    trl_forward = target.forward  # TRL's fused forward (bound): it keeps the unfused path and the long-batch fallback
    text = target.config.get_text_config()
    if getattr(text, "final_logit_softcapping", None) or getattr(text, "logit_scale", None) not in (None, 1, 1.0):
        return False

    @functools.wraps(type(target).forward)
    def forward(self, *args, fused_lm_head=False, labels=None, shift_labels=None, num_items_in_batch=None, **kwargs):
        shifted = labels[:, 1:] if shift_labels is None and labels is not None else shift_labels
        if not fused_lm_head or int((shifted != -100).sum()) * self.get_output_embeddings().weight.shape[0] > MAX_LOGITS:
            return trl_forward(*args, fused_lm_head=fused_lm_head, labels=labels, shift_labels=shift_labels,
                               num_items_in_batch=num_items_in_batch, **kwargs)
        kwargs["use_cache"] = False
        hidden = self.base_model(*args, **kwargs).last_hidden_state
        if shift_labels is None:
            hidden = hidden[:, :-1]
        mask = shifted != -100
        weight = self.get_output_embeddings().weight
        per_token = labeled_log_probs(hidden[mask], weight, shifted[mask], outputs)
        full = {k: v.new_zeros(mask.shape).masked_scatter(mask, v) for k, v in per_token.items()}
        loss = -full["log_probs"].sum() / (mask.sum().clamp(min=1) if num_items_in_batch is None else num_items_in_batch)
        return FusedCausalLMOutput(loss=loss, log_probs=full["log_probs"], entropy=full.get("entropy"),
                                   log_sum_sq_probs=full.get("log_sum_sq_probs"), mean_logits=full.get("mean_logits"),
                                   is_top1=full.get("is_top1"), label_mask=mask, aux_loss=None)

    target.forward = types.MethodType(forward, target)
    return True


# -- 3. bfloat16 adapters ------------------------------------------------------------------------------------------------


def use_bf16_adapters(model) -> bool:
    """Run ``model``'s decoder (a PEFT model over a bfloat16 base whose trained weights are float32) under bfloat16
    autocast, without PEFT's float32 input casts. False, and nothing changed, for any other model."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    if not hasattr(model, "get_base_model"):
        return False
    target = model.get_base_model()
    frozen = {p.dtype for p in target.parameters() if not p.requires_grad}
    trained = {p.dtype for p in target.parameters() if p.requires_grad}
    decoder = getattr(target, getattr(target, "base_model_prefix", ""), None)
    if frozen != {torch.bfloat16} or trained != {torch.float32} or not isinstance(decoder, torch.nn.Module):
        return False
    for module in model.modules():
        if isinstance(module, BaseTunerLayer):
            module.cast_input_dtype_enabled = False
    inner, device_type = decoder.forward, next(target.parameters()).device.type

    @functools.wraps(inner)
    def forward(*args, **kwargs):
        with torch.autocast(device_type, dtype=torch.bfloat16):
            return inner(*args, **kwargs)

    decoder.forward = forward
    return True
