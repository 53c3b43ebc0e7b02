"""Null-space LoRA for self-cognition: keep the adapter's change out of the input directions the general rows use.

A LoRA module adds ``B A x`` to a frozen linear layer's output. If every row of ``A`` is orthogonal to the inputs ``x``
that general text produces at that layer, the change is zero on general text and, layer by layer, the model answers
general prompts exactly as the base did; the identity can only be written through directions general text leaves
(nearly) unused. As in AlphaEdit (Fang et al. 2024, "null-space constrained knowledge editing"), the directions come
from the uncentered second moment ``sum x x^T`` of each adapted layer's inputs over the general rows (the replay rows:
the base model's own answers, never the questions the probe asks); its top eigenvectors that hold ``keep`` of the
energy span what is protected, and ``A`` is projected onto their orthogonal complement before training and after
every optimizer step (projected gradient descent on ``A``).

``use_null_space(trainer, rows, keep)`` installs it on a built TRL trainer over a PEFT model; ``rows`` are the
tokenized general rows (``input_ids``).
"""

from __future__ import annotations

import torch
from transformers import TrainerCallback


def lora_modules(model) -> dict:
    """The PEFT LoRA layers of ``model`` by name (those with a ``base_layer`` and ``lora_A``)."""
    return {name: m for name, m in model.named_modules() if hasattr(m, "lora_A") and hasattr(m, "base_layer")}


@torch.no_grad()
def input_moments(model, rows: list[list[int]], masks: list[list[bool]] | None = None,
                  batch_size: int = 16) -> dict[str, torch.Tensor]:
    """``sum x x^T`` (float32) of each LoRA layer's input over every token of ``rows`` (or the positions ``masks``
    marks), the adapter off. Rows go ``batch_size`` at a time, right-padded with an attention mask; padding never
    enters the sums (a causal model's real positions do not see the padding after them)."""
    modules, moments, hooks, current = lora_modules(model), {}, [], {}

    def hook(name):
        def add(_module, args):
            x = args[0].detach().reshape(-1, args[0].shape[-1])[current["keep"]].float()
            moments[name] = moments.get(name, 0) + x.T @ x
        return add

    for name, module in modules.items():
        hooks.append(module.base_layer.register_forward_pre_hook(hook(name)))
    decoder = model.get_base_model().base_model
    device = next(model.parameters()).device
    try:
        with model.disable_adapter():
            for start in range(0, len(rows), batch_size):
                chunk = rows[start:start + batch_size]
                width = max(map(len, chunk))
                ids = torch.zeros(len(chunk), width, dtype=torch.long)
                attention = torch.zeros(len(chunk), width, dtype=torch.bool)
                keep = torch.zeros(len(chunk), width, dtype=torch.bool)
                for i, row in enumerate(chunk):
                    ids[i, :len(row)] = torch.tensor(row)
                    attention[i, :len(row)] = True
                    keep[i, :len(row)] = torch.tensor(masks[start + i]) if masks is not None else True
                current["keep"] = keep.flatten().to(device)
                decoder(input_ids=ids.to(device), attention_mask=attention.long().to(device), use_cache=False)
    finally:
        for h in hooks:
            h.remove()
    return moments


def null_projector(moment: torch.Tensor, keep: float) -> tuple[torch.Tensor, int]:
    """``I - U U^T`` where ``U`` are the fewest top eigenvectors of ``moment`` holding at least ``keep`` of its trace, and
    their count."""
    values, vectors = torch.linalg.eigh(moment.double())
    values, vectors = values.flip(0).clamp(min=0), vectors.flip(1)
    share = values.cumsum(0) / values.sum().clamp(min=1e-30)
    k = min(int((share < keep).sum()) + 1, len(values))
    u = vectors[:, :k]
    return (torch.eye(len(values), dtype=u.dtype, device=u.device) - u @ u.T).float(), k


def identity_projector(identity: torch.Tensor, n_identity: int, general: torch.Tensor, n_general: int, m: int,
                       ridge: float = 1e-3) -> torch.Tensor:
    """``Q Q^T`` for the span of the ``m`` input directions where the identity rows' per-token energy is largest against
    the general rows' (the top generalized eigenvectors of the two per-token second moments; ``ridge`` times the mean
    general eigenvalue is added so directions general text never uses stay finite)."""
    s_id, s_gen = identity.double() / max(n_identity, 1), general.double() / max(n_general, 1)
    d = s_gen.shape[0]
    s_gen = s_gen + ridge * s_gen.trace() / d * torch.eye(d, dtype=s_gen.dtype, device=s_gen.device)
    l_inv = torch.linalg.inv(torch.linalg.cholesky(s_gen))
    values, vectors = torch.linalg.eigh(l_inv @ s_id @ l_inv.T)
    top = l_inv.T @ vectors[:, -min(m, d):]
    q = torch.linalg.qr(top)[0]
    return (q @ q.T).float()


class NullSpaceCallback(TrainerCallback):
    """Projects each LoRA ``A`` onto its layer's null space after every optimizer step."""

    def __init__(self, modules: dict, projectors: dict):
        self.modules, self.projectors = modules, projectors

    def project(self) -> None:
        with torch.no_grad():
            for name, module in self.modules.items():
                p = self.projectors[name]
                for a in module.lora_A.values():
                    a.weight.copy_((a.weight.float() @ p.to(a.weight.device)).to(a.weight.dtype))

    def on_step_end(self, args, state, control, **kwargs):
        self.project()


def use_identity_subspace(trainer, identity_rows: list[dict], general_rows: list[dict], m: int,
                          log=print) -> NullSpaceCallback:
    """Restrict every LoRA ``A`` to the ``m`` input directions most specific to the identity rows' prompts (their
    untrained positions: the question, not the answer's name tokens) against the general rows' prompts
    (``identity_projector``); returns the installed callback."""
    import os

    model = trainer.model
    where = os.environ.get("STUDIO_SUBSPACE_POSITIONS", "prompt")

    def masks(rows):
        if where == "all":
            return None
        return [[label == -100 for label in r["labels"]] for r in rows]

    ident = input_moments(model, [r["input_ids"] for r in identity_rows], masks(identity_rows))
    general = input_moments(model, [r["input_ids"] for r in general_rows], masks(general_rows))
    count = (lambda rows: sum(map(len, [r["input_ids"] for r in rows]))) if where == "all" else \
        (lambda rows: sum(sum(label == -100 for label in r["labels"]) for r in rows))
    n_id, n_gen = count(identity_rows), count(general_rows)
    modules = lora_modules(model)
    projectors = {name: identity_projector(ident[name], n_id, general[name], n_gen, m) for name in modules}
    callback = NullSpaceCallback(modules, projectors)
    callback.project()
    trainer.add_callback(callback)
    log(f"identity subspace: {len(modules)} layers' adapters read only the {m} input directions most specific to the "
        f"identity rows ({n_id} {where} tokens) against the general rows ({n_gen} tokens)")
    return callback


def use_null_space(trainer, rows: list[list[int]], keep: float, log=print) -> NullSpaceCallback:
    """Install null-space LoRA on ``trainer`` (see the module docstring); returns the callback."""
    model = trainer.model
    if not hasattr(model, "disable_adapter"):
        raise ValueError("null-space LoRA needs a LoRA/QLoRA model")
    if not rows:
        raise ValueError("null-space LoRA needs general rows to protect (replay or your general data)")
    moments = input_moments(model, rows)
    modules = lora_modules(model)
    projectors, dims = {}, []
    for name in modules:
        projectors[name], k = null_projector(moments[name], keep)
        dims.append((k, moments[name].shape[0]))
    callback = NullSpaceCallback(modules, projectors)
    callback.project()
    trainer.add_callback(callback)
    tokens = sum(len(r) for r in rows)
    mean_k = sum(k for k, _ in dims) / len(dims)
    log(f"null-space LoRA: {len(modules)} layers' adapters kept off the input directions holding {keep:g} of the "
        f"general rows' energy ({tokens} tokens; {mean_k:.0f} directions protected per layer on average)")
    return callback
