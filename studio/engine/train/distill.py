"""Self-distillation on general rows: a KL term that keeps the tuned model's next-token distribution at the base model's.

Self-cognition teaches a new name on a few hundred rows; plain SFT on replay rows (the base's own greedy answers) only
pins the top token of each answer, so the rest of the distribution drifts and nearby answers flip. Here the rows of the
general datasets (replay, or the user's general data) also carry ``distill: 1``; for their trained positions the loss
adds ``weight * KL(base || tuned)`` per token, where "base" is the same model with the LoRA adapter off (one model in
memory, one extra forward without gradients per step over the distilled rows only, the LM head applied only at those
positions).

``use_self_distillation(trainer, weight)`` installs it on a built TRL trainer: a collator wrapper turns the per-row flag
into a per-token mask that follows the batch layout (padding-free pack or padded rows), and ``compute_loss`` adds the term
and logs its value as ``distill_kl``. Needs a PEFT model (``disable_adapter``); the config check refuses it otherwise.
"""

from __future__ import annotations

import torch

DISTILL = "distill"


class DistillCollator:
    """Wraps a TRL language-modeling collator: examples may carry ``distill`` (0/1); the batch gets a token mask shaped
    like ``input_ids`` (one packed row for padding-free batches, else right-padded rows)."""

    def __init__(self, inner):
        self.inner = inner

    def __call__(self, examples: list[dict]) -> dict:
        flags = [int(e.get(DISTILL, 0)) for e in examples]
        batch = self.inner([{k: v for k, v in e.items() if k != DISTILL} for e in examples])
        ids = batch["input_ids"]
        rows = [torch.full((len(e["input_ids"]),), f, dtype=torch.bool) for e, f in zip(examples, flags)]
        if ids.shape[0] == 1 and len(rows) > 1:  # padding-free: the rows were concatenated in order
            rows = [torch.cat(rows)]
        mask = torch.zeros(ids.shape, dtype=torch.bool)
        for i, row in enumerate(rows):
            mask[i, : len(row)] = row
        batch[DISTILL] = mask
        return batch


def distill_kl(model, hidden: torch.Tensor, inputs: dict, mask: torch.Tensor) -> torch.Tensor:
    """Mean per-token KL(base || tuned) over the trained positions of distilled rows; 0 when there are none.

    ``hidden``: the tuned model's final hidden states [B, T, H] (with gradient); position t predicts token t + 1.
    """
    positions = (inputs["labels"][:, 1:] != -100) & mask[:, 1:]
    if not bool(positions.any()):
        return hidden.new_zeros((), dtype=torch.float32)
    head = model.get_output_embeddings()
    tuned = head(hidden[:, :-1][positions].to(head.weight.dtype)).float().log_softmax(-1)
    decoder = model.get_base_model().base_model
    kwargs = {k: v for k, v in inputs.items() if k not in ("labels", DISTILL, "fused_lm_head")}
    sub, picked = distilled_rows(kwargs, mask, positions)
    with torch.no_grad(), model.disable_adapter():
        base_hidden = decoder(**dict(sub, use_cache=False)).last_hidden_state
        base = head(base_hidden[:, :-1][picked].to(head.weight.dtype)).float().log_softmax(-1)
    return (base.exp() * (base - tuned)).sum(-1).mean()


def distilled_rows(inputs: dict, mask: torch.Tensor, positions: torch.Tensor) -> tuple[dict, torch.Tensor]:
    """The model inputs cut down to the distilled rows (the base forward runs on those only: the identity rows are about
    half the tokens) and the predicting positions in that cut, in the same order as ``positions`` selects them.

    Padded rows: the rows with a flag. A padding-free pack (one row, ``cu_seq_lens_q``): the flagged segments, packed
    again with their own boundaries (rows attend only within themselves, so each row's hidden states are unchanged)."""
    ids = inputs["input_ids"]
    if ids.shape[0] > 1 or "cu_seq_lens_q" not in inputs:
        rows = mask.any(1)
        if bool(rows.all()):
            return inputs, positions
        return ({k: v[rows] if torch.is_tensor(v) and v.dim() and v.shape[0] == ids.shape[0] else v
                 for k, v in inputs.items()}, positions[rows])
    keep = mask[0]
    if bool(keep.all()):
        return inputs, positions
    cu = inputs["cu_seq_lens_q"]
    lengths = (cu[1:] - cu[:-1])[keep[cu[:-1].clamp(max=keep.numel() - 1)] & (cu[1:] > cu[:-1])]
    bounds = torch.cat([cu.new_zeros(1), lengths.cumsum(0).to(cu.dtype)])
    sub = {k: v[:, keep] if torch.is_tensor(v) and v.dim() == 2 and v.shape[1] == keep.numel() else v
           for k, v in inputs.items()}
    longest = int(lengths.max())
    sub.update(cu_seq_lens_q=bounds, cu_seq_lens_k=bounds.clone(), max_length_q=longest, max_length_k=longest)
    if "seq_idx" in sub:  # the row index of each token, numbered again from 0
        sub["seq_idx"] = torch.repeat_interleave(torch.arange(len(lengths)), lengths.cpu()).unsqueeze(0).to(ids.device)
    # position t (< T - 1) predicts t + 1; a kept position's next token is kept too (rows are whole), so in the cut the
    # prediction pairs are the same, in the same order
    picked = torch.cat([positions[0], positions.new_zeros(1)])[keep][:-1].unsqueeze(0)
    return sub, picked


def without_general_ce(inputs: dict, mask: torch.Tensor, num_items_in_batch):
    """``inputs`` with the distilled rows' labels ignored by the next-token loss (they keep only the KL term) and the
    loss's token count scaled to the labels left (at least 1: a batch of general rows only has a next-token loss of 0)."""
    labels = inputs["labels"]
    kept = labels.masked_fill(mask, -100)
    if num_items_in_batch is not None:
        before, after = int((labels[:, 1:] != -100).sum()), int((kept[:, 1:] != -100).sum())
        scaled = max(1, round(float(num_items_in_batch) * after / max(before, 1)))
        num_items_in_batch = torch.as_tensor(scaled, device=labels.device) if torch.is_tensor(num_items_in_batch) else scaled
    return dict(inputs, labels=kept), num_items_in_batch


def identity_ce(model, hidden: torch.Tensor, inputs: dict, mask: torch.Tensor, num_items_in_batch) -> torch.Tensor:
    """The next-token loss of the rows not distilled (the identity rows), summed and divided by what the trainer divided
    its loss by (``num_items_in_batch``, else its count of trained tokens): the share of the loss those rows added."""
    labels = inputs["labels"][:, 1:]
    positions = (labels != -100) & ~mask[:, 1:]
    if not bool(positions.any()):
        return hidden.new_zeros((), dtype=torch.float32)
    head = model.get_output_embeddings()
    logits = head(hidden[:, :-1][positions].to(head.weight.dtype)).float()
    total = torch.nn.functional.cross_entropy(logits, labels[positions], reduction="sum")
    count = num_items_in_batch if num_items_in_batch is not None else (labels != -100).sum()
    return total / count


def use_self_distillation(trainer, weight: float, log=print, general_ce: bool = True, identity_weight: float = 1.0) -> None:
    """Add ``weight * KL(base || tuned)`` on distilled rows to ``trainer``'s training loss (see the module docstring).

    ``general_ce=False``: the distilled rows get no next-token loss on the base's greedy answers, only the KL (which
    holds the base's whole distribution rather than sharpening its top token, the wrong ones included)."""
    model = trainer.model
    if not hasattr(model, "disable_adapter"):
        raise ValueError("self-distillation needs a LoRA/QLoRA model: the base is the model with its adapter off")
    trainer.data_collator = DistillCollator(trainer.data_collator)
    original = trainer.compute_loss
    decoder = model.get_base_model().base_model

    def compute_loss(model, inputs, return_outputs=False, num_items_in_batch=None):
        mask = inputs.pop(DISTILL, None)
        # a batch of identity rows only still needs the hidden states when those rows are weighted
        if mask is None or not model.training or not (bool(mask.any()) or identity_weight != 1.0):
            return original(model, inputs, return_outputs=return_outputs, num_items_in_batch=num_items_in_batch)
        captured = []
        # the decoder's output is the tuned model's final hidden state (whichever LM-head path the trainer takes)
        handle = decoder.register_forward_hook(lambda _m, _a, out: captured.append(out.last_hidden_state))
        ce_inputs, ce_items = (inputs, num_items_in_batch) if general_ce else without_general_ce(
            inputs, mask.to(inputs["labels"].device), num_items_in_batch)
        try:
            result = original(model, ce_inputs, return_outputs=return_outputs, num_items_in_batch=ce_items)
        finally:
            handle.remove()
        kl = distill_kl(model, captured[0], inputs, mask.to(inputs["labels"].device))
        if identity_weight != 1.0:  # the trainer's loss counted each identity token once: add the rest of its weight
            weighted = (identity_weight - 1.0) * identity_ce(model, captured[0], ce_inputs, mask.to(inputs["labels"].device),
                                                              ce_items)
        else:
            weighted = 0.0
        metrics = getattr(trainer, "_metrics", None)
        if metrics is not None and bool(mask.any()):
            metrics["train"]["distill_kl"].append(float(kl.detach()))
        if return_outputs:
            return result[0] + weight * kl + weighted, result[1]
        return result + weight * kl + weighted

    trainer.compute_loss = compute_loss
    log(f"self-distillation: + {weight} x KL(base || tuned) on the general rows' answers (adapter off = base)"
        + ("" if general_ce else "; no next-token loss on them")
        + ("" if identity_weight == 1.0 else f"; identity rows' loss x {identity_weight}"))
