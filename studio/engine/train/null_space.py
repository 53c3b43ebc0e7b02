"""LoRA kept out of the directions the general rows use: a self-cognition run that changes little else.

A LoRA layer adds ``B A x`` to a linear layer's output. Whatever it teaches, it also moves every other prompt whose input
``x`` has a component along A's rows; on the default model the answers the base got right flip in proportion to how far
the model moved on general prompts (README, "Where the lost answers come from"), whatever the change teaches. Here each
adapter's A is confined to the input directions that carry almost none of the general rows' activations: from the
base model's inputs to each adapted layer on the run's general rows (replay; the adapter off), the covariance
``C = sum x x^T`` is split by eigenvalue, the top directions that hold all but ``share`` of its energy are removed, and
``A <- A P`` with ``P`` the projector onto the rest, at the start and after every optimizer step (Adam's per-weight
scaling would otherwise let A drift back). The idea is the null-space constraint of AlphaEdit (Fang et al., 2024) and
LoRA-Null, applied to a LoRA run: the general rows' own inputs give (nearly) no adapter output, so the model's answers
to prompts like them stay where they were, while inputs off their span (the identity questions, as far as they differ)
still reach the adapter.

``use_null_space(trainer, rows, share, log)`` installs it on a built trainer; ``rows`` are the general rows' token ids.
"""

from __future__ import annotations

import torch
from transformers import TrainerCallback


def lora_layers(model) -> dict[str, torch.nn.Module]:
    """name -> every PEFT LoRA layer of ``model`` (those with an ``lora_A`` for the default adapter)."""
    return {name: m for name, m in model.named_modules() if hasattr(m, "lora_A") and "default" in getattr(m, "lora_A", {})}


def input_covariances(model, rows: list[list[int]]) -> dict[str, torch.Tensor]:
    """name -> sum over every position of ``rows`` of x x^T (fp32), x the input of that LoRA layer, the adapter off."""
    layers, covs, hooks = lora_layers(model), {}, []

    def hook(name):
        def pre(_module, args):
            x = args[0].detach().reshape(-1, args[0].shape[-1]).float()
            covs[name] = covs.get(name, 0) + x.T @ x

        return pre

    for name, layer in layers.items():
        hooks.append(layer.base_layer.register_forward_pre_hook(hook(name)))
    device = next(model.parameters()).device
    try:
        with model.disable_adapter(), torch.no_grad():
            for ids in rows:  # one row at a time: no padding or packing to keep out of the statistics
                model(input_ids=torch.tensor([ids], device=device), use_cache=False)
    finally:
        for h in hooks:
            h.remove()
    return covs


def projector(cov: torch.Tensor, share: float, target: torch.Tensor | None = None) -> tuple[torch.Tensor, int]:
    """(P, kept): the projector onto input directions that together hold at most ``share`` of ``cov``'s trace (the general
    rows' energy), and how many directions that is. Without ``target``: the weakest eigen-directions of ``cov``. With
    ``target`` (the covariance of the rows to be learned): directions in order of target energy per unit of general
    energy (generalised eigenvectors of target v = l cov v), as many as stay within ``share``."""
    cov = cov.double()
    if target is None:
        values, vectors = torch.linalg.eigh(cov)  # ascending: the weakest first
    else:
        gv, gu = torch.linalg.eigh(cov)  # whiten by the general covariance (floored: it can be near-singular)
        inv = gu @ torch.diag(gv.clamp(min=1e-6 * float(gv.clamp(min=0).mean())).rsqrt()) @ gu.T
        values, w = torch.linalg.eigh(inv @ target.double() @ inv)
        vectors = torch.linalg.qr((inv @ w).flip(-1)).Q  # the highest ratio first, orthonormalised in that order
    energy = torch.einsum("ik,ij,jk->k", vectors, cov, vectors).clamp(min=0)
    cumulative = energy.cumsum(0) / cov.trace().clamp(min=1e-30)
    kept = int((cumulative <= share + 1e-9).sum())
    basis = vectors[:, :kept]
    return (basis @ basis.T).float(), kept


class NullSpaceCallback(TrainerCallback):
    """Projects every LoRA A onto its layer's kept directions after each optimizer step."""

    def __init__(self, pairs: list[tuple[torch.nn.Parameter, torch.Tensor]]):
        self.pairs = pairs
        self.project()

    def project(self) -> None:
        with torch.no_grad():
            for weight, proj in self.pairs:
                weight.copy_(weight @ proj.to(weight.dtype))

    def on_step_end(self, args, state, control, **kwargs):
        self.project()


def use_null_space(trainer, rows: list[list[int]], share: float, log=print,
                   targets: list[list[int]] | None = None) -> NullSpaceCallback:
    """Confine ``trainer.model``'s LoRA A matrices to the directions that hold at most ``share`` of the general rows'
    input energy (those the ``targets`` rows use most, when given), now and after every step."""
    model = trainer.model
    covs = input_covariances(model, rows)
    target_covs = input_covariances(model, targets) if targets else {}
    pairs, dims, done = [], [], {}
    for name, layer in lora_layers(model).items():
        cov = covs[name]
        key = (cov.shape[0], float(cov.trace()), float(cov.sum()))  # q/k/v (and gate/up) see the same input: one eigh
        if key not in done:
            done[key] = projector(cov, share, target_covs.get(name))
        proj, kept = done[key]
        pairs.append((layer.lora_A["default"].weight, proj.to(layer.lora_A["default"].weight.device)))
        dims.append((kept, proj.shape[0]))
    callback = NullSpaceCallback(pairs)
    trainer.add_callback(callback)
    kept, total = sum(k for k, _ in dims), sum(d for _, d in dims)
    log(f"null space: LoRA A of {len(pairs)} layers confined to the directions holding {share:.2%} of the general rows' "
        f"input energy ({kept}/{total} input dimensions kept, from {len(rows)} rows)")
    return callback
