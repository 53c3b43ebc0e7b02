"""Identity subspace for self-cognition: each LoRA layer reads only the input directions most specific to the identity
rows, so the adapter's change ``B A x`` is small wherever general text goes.

A LoRA module adds ``B A x`` to a frozen linear layer's output. With ``A = A P``, ``P`` a projector onto ``m`` input
directions, the change depends only on the part of ``x`` in those directions. We pick them from the per-token second
moments of each adapted layer's inputs (the base, adapter off) over the run's identity rows and over its general rows
(the replay rows: the base's own answers, never the questions the probe asks): the top ``m`` generalized eigenvectors,
where identity text carries the most energy per unit of general-text energy. ``A`` is projected onto their span before
training and after every optimizer step (projected gradient descent on ``A``); ``B`` is free.

A stricter form was measured first and dropped (README, Self-cognition): keeping ``A`` off every direction general text
uses (a null-space constraint in the manner of AlphaEdit) left the held-out identity questions unreachable too, since
they look like general prompts. This form only ranks directions, and the learning rate is raised to match (the preset).

``use_identity_subspace(trainer, identity_rows, general_rows, m)`` installs it on a built TRL trainer over a PEFT model;
rows are tokenized (``input_ids``).
"""

from __future__ import annotations

import time

import torch
from transformers import TrainerCallback


def lora_modules(model) -> dict:
    """The PEFT LoRA layers of ``model`` by name (those with a ``base_layer`` and ``lora_A``)."""
    return {name: m for name, m in model.named_modules() if hasattr(m, "lora_A") and hasattr(m, "base_layer")}


def _batch(rows: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded ids and their attention mask."""
    width = max(map(len, rows))
    ids = torch.zeros(len(rows), width, dtype=torch.long)
    mask = torch.zeros(len(rows), width, dtype=torch.bool)
    for i, row in enumerate(rows):
        ids[i, :len(row)] = torch.tensor(row)
        mask[i, :len(row)] = True
    return ids, mask


@torch.no_grad()
def input_moments(model, rows: list[list[int]], batch_size: int = 16) -> dict[str, torch.Tensor]:
    """``sum x x^T`` (float32) of each LoRA layer's input over every token of ``rows``, the adapter off. Rows go
    ``batch_size`` at a time, by length, right-padded; padding never enters the sums (a causal model's real positions do
    not see the padding after them). Layers fed the same tensor (q/k/v, gate/up) share one sum: the same object."""
    modules, moments, hooks, owner, batch = lora_modules(model), {}, [], {}, {}

    def hook(name):
        def add(_module, args):
            x = args[0]
            first = batch["seen"].setdefault(x.data_ptr(), (x, name))  # held for the batch: no address is reused
            if first[0] is x and first[1] != name:
                owner[name] = first[1]
                return
            x = x.detach().reshape(-1, x.shape[-1])[batch["keep"]].float()
            moments[name] = moments.get(name, 0) + x.T @ x
        return add

    for name, module in modules.items():
        hooks.append(module.base_layer.register_forward_pre_hook(hook(name)))
    decoder = model.get_base_model().base_model
    device = next(model.parameters()).device
    rows = sorted(rows, key=len)
    try:
        with model.disable_adapter():
            for start in range(0, len(rows), batch_size):
                ids, mask = _batch(rows[start:start + batch_size])
                batch.update(keep=mask.flatten().to(device), seen={})
                decoder(input_ids=ids.to(device), attention_mask=mask.long().to(device), use_cache=False)
    finally:
        batch.clear()
        for h in hooks:
            h.remove()
    return {name: moments[owner.get(name, name)] for name in modules}


def identity_projector(identity: torch.Tensor, n_identity: int, general: torch.Tensor, n_general: int, m: int,
                       ridge: float = 1e-3) -> torch.Tensor:
    """``Q Q^T`` for the span of the ``m`` input directions where the identity rows' per-token energy is largest against
    the general rows' (the top generalized eigenvectors of the two per-token second moments; ``ridge`` times the mean
    general eigenvalue is added so directions general text never uses stay finite)."""
    s_id, s_gen = identity.double() / max(n_identity, 1), general.double() / max(n_general, 1)
    d = s_gen.shape[0]
    s_gen = s_gen + ridge * s_gen.trace() / d * torch.eye(d, dtype=s_gen.dtype, device=s_gen.device)
    chol = torch.linalg.cholesky(s_gen)
    half = torch.linalg.solve_triangular(chol, s_id, upper=False)  # L^-1 S_id
    whitened = torch.linalg.solve_triangular(chol, half.T, upper=False)  # L^-1 S_id L^-T (S_id symmetric)
    vectors = torch.linalg.eigh((whitened + whitened.T) / 2)[1][:, -min(m, d):]
    q = torch.linalg.qr(torch.linalg.solve_triangular(chol.T, vectors, upper=True))[0]  # back: L^-T v
    return (q @ q.T).float()


class SubspaceCallback(TrainerCallback):
    """Projects each LoRA ``A`` onto its layer's subspace after every optimizer step."""

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


def use_identity_subspace(trainer, identity_rows: list[list[int]], general_rows: list[list[int]], m: int,
                          log=print) -> SubspaceCallback:
    """Restrict every LoRA ``A`` of ``trainer.model`` to the ``m`` input directions most specific to ``identity_rows``
    against ``general_rows`` (token ids); returns the installed callback."""
    model = trainer.model
    if not hasattr(model, "disable_adapter"):
        raise ValueError("identity.subspace needs a LoRA/QLoRA model")
    if not identity_rows or not general_rows:
        raise ValueError("identity.subspace needs identity rows and general rows (replay or your general data)")
    started = time.perf_counter()
    ident, general = input_moments(model, identity_rows), input_moments(model, general_rows)
    summed = time.perf_counter()
    n_id, n_gen = sum(map(len, identity_rows)), sum(map(len, general_rows))
    modules, by_moment = lora_modules(model), {}
    for name in modules:  # layers that share their inputs share the projector
        key = (id(ident[name]), id(general[name]))
        if key not in by_moment:
            by_moment[key] = identity_projector(ident[name], n_id, general[name], n_gen, m)
    callback = SubspaceCallback(modules, {name: by_moment[(id(ident[name]), id(general[name]))] for name in modules})
    callback.project()
    trainer.add_callback(callback)
    log(f"identity subspace: {len(modules)} layers' adapters read only the {m} input directions most specific to the "
        f"identity rows ({n_id} tokens) against the general rows ({n_gen} tokens); {len(by_moment)} distinct inputs, "
        f"{time.perf_counter() - started:.0f} s ({summed - started:.0f} s of sums, the rest solving)")
    return callback
