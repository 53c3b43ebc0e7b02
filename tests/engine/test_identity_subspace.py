"""Identity subspace (engine/train/identity_subspace.py): the projector picks the directions the identity rows use and
the general rows do not, moments in padded batches equal one row at a time, and a self-cognition run keeps every
adapter in its subspace to the end, logs it and refuses it without self-distillation."""

from __future__ import annotations

import torch

from studio import config as C
from studio.engine import rundir
from studio.engine.train import identity_subspace as S
from studio.engine.train.runner import run

from tests.engine.test_distill import _cfg


def _peft(tiny_model_dir):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    return get_peft_model(model, LoraConfig(r=4, target_modules="all-linear", init_lora_weights=False))


def test_projector_picks_the_directions_the_identity_rows_use_and_general_rows_do_not():
    general = torch.diag(torch.tensor([100.0, 1, 1, 1, 1, 1]))  # general text: strong in direction 0
    identity = torch.diag(torch.tensor([100.0, 1, 1, 40, 1, 1]))  # identity rows: also strong in 0, and in 3
    p = S.identity_projector(identity * 7, 7, general * 3, 3, 1)  # per-token: the counts divide out
    assert torch.allclose(p, torch.diag(torch.tensor([0.0, 0, 0, 1, 0, 0])), atol=1e-5)
    assert torch.allclose(p @ p, p, atol=1e-5)  # a projector
    assert torch.linalg.matrix_rank(S.identity_projector(identity, 1, general, 1, 4)) == 4


def _plain_moments(model, rows):
    """Each LoRA layer's own ``sum x x^T``, one row at a time, nothing shared: the reference."""
    sums, hooks = {}, []
    for name, module in S.lora_modules(model).items():
        def add(_module, args, name=name):
            x = args[0].reshape(-1, args[0].shape[-1]).float()
            sums[name] = sums.get(name, 0) + x.T @ x
        hooks.append(module.base_layer.register_forward_pre_hook(add))
    with torch.no_grad(), model.disable_adapter():
        for row in rows:
            model(input_ids=torch.tensor([row]))
    for h in hooks:
        h.remove()
    return sums


def test_moments_in_padded_batches_equal_each_layers_own_sums(tiny_model_dir):
    torch.manual_seed(0)
    model = _peft(tiny_model_dir)
    rows = [torch.randint(5, 200, (n,)).tolist() for n in (7, 19, 3, 12)]
    batched, reference = S.input_moments(model, rows, batch_size=3), _plain_moments(model, rows)
    assert set(batched) == set(reference) == set(S.lora_modules(model))
    for name in batched:
        assert torch.allclose(batched[name], reference[name], rtol=1e-3, atol=1e-3), name
    shared = {id(v) for v in batched.values()}
    assert len(shared) < len(batched)  # q/k/v and gate/up read one tensor: one sum each
    layer = [k for k in batched if ".layers.0." in k]
    assert len({id(batched[k]) for k in layer}) == 4, layer  # q/k/v, o, gate/up, down


def test_projector_matches_the_generalized_eigenproblem():
    torch.manual_seed(0)
    a, b = torch.randn(40, 12, dtype=torch.float64), torch.randn(60, 12, dtype=torch.float64)
    s_id, s_gen = a.T @ a, b.T @ b
    p = S.identity_projector(s_id, 1, s_gen, 1, 3, ridge=0.0).double()
    values, vectors = torch.linalg.eig(torch.linalg.solve(s_gen, s_id))  # S_gen^-1 S_id v = l v
    top = vectors.real[:, values.real.argsort()[-3:]]
    assert torch.allclose(p @ top, top, atol=1e-4)  # the top three lie in the subspace


def test_self_cognition_run_keeps_every_adapter_in_its_subspace(tiny_model_dir, alpaca_file, tmp_path, monkeypatch):
    installed, install = [], S.use_identity_subspace

    def spy(*args, **kwargs):
        installed.append(install(*args, **kwargs))
        return installed[-1]

    monkeypatch.setattr(S, "use_identity_subspace", spy)
    cfg = C.check(_cfg(tiny_model_dir, alpaca_file, **{"identity.subspace": 3, "lora.r": 4}))
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    assert run(cfg, run_dir) == 0, rundir.tail_log(run_dir)
    log = (run_dir / "train.log").read_text(encoding="utf-8")
    assert "identity subspace:" in log and "read only the 3 input directions" in log
    from safetensors.torch import load_file

    saved = load_file(next(run_dir.rglob("adapter_model.safetensors")))
    a_weights = {k: v for k, v in saved.items() if "lora_A" in k}
    assert a_weights and all(bool(v.abs().sum() > 0) for v in a_weights.values())  # trained, not projected to nothing
    assert all(torch.linalg.matrix_rank(v.float(), atol=1e-4) <= 3 for v in a_weights.values())  # rows span <= 3 dims
    (callback,) = installed
    for name, module in callback.modules.items():  # the trained A, as the last step left it, is in its subspace
        a = next(iter(module.lora_A.values())).weight.detach().float()
        assert torch.allclose(a @ callback.projectors[name], a, atol=1e-5), name


def test_subspace_refuses_a_run_without_distillation(tiny_model_dir, alpaca_file):
    errors = C.validate(_cfg(tiny_model_dir, alpaca_file, **{"identity.distill": 0.0, "identity.subspace": 8}))
    assert any("identity.subspace" in e and "identity.distill > 0" in e for e in errors), errors
