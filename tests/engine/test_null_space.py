"""Null-space LoRA (engine/train/null_space.py): the projector removes the protected directions, a projected adapter
barely moves the general rows' layer inputs (bounded by the energy left out), and a self-cognition run keeps every
adapter in its null space to the end, logs it and refuses it without self-distillation."""

from __future__ import annotations

import pytest
import torch

from studio import config as C
from studio.engine import rundir
from studio.engine.train.null_space import NullSpaceCallback, input_moments, lora_modules, null_projector
from studio.engine.train.runner import run

from tests.engine.test_distill import _cfg


def test_projector_removes_the_directions_that_hold_the_energy():
    basis = torch.linalg.qr(torch.randn(6, 6, dtype=torch.float64))[0]
    moment = (basis * torch.tensor([100.0, 10.0, 1.0, 0.1, 0.01, 0.001], dtype=torch.float64)) @ basis.T
    p, k = null_projector(moment, 0.95)  # 100 / 111.1 = 0.90 < 0.95 <= 110 / 111.1: two directions
    assert k == 2
    assert torch.allclose(p @ basis[:, :2].float(), torch.zeros(6, 2), atol=1e-5)
    assert torch.allclose(p @ basis[:, 2:].float(), basis[:, 2:].float(), atol=1e-5)
    assert null_projector(moment, 0.0)[1] == 1 and null_projector(moment, 1.0)[1] == 6


def _peft(tiny_model_dir):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    return get_peft_model(model, LoraConfig(r=4, target_modules="all-linear", init_lora_weights=False))


@pytest.mark.parametrize("keep", [0.9, 0.99])
def test_a_projected_adapter_changes_the_general_inputs_only_by_the_energy_left_out(tiny_model_dir, keep):
    torch.manual_seed(0)
    model = _peft(tiny_model_dir)
    rows = [torch.randint(5, 200, (n,)).tolist() for n in (40, 60, 80)]
    moments = input_moments(model, rows)
    modules = lora_modules(model)
    projectors = {name: null_projector(moments[name], keep)[0] for name in modules}
    before = {name: sum((a.weight.float() @ moments[name] @ a.weight.float().T).trace() for a in m.lora_A.values())
              for name, m in modules.items()}
    NullSpaceCallback(modules, projectors).project()
    for name, module in modules.items():
        a = next(iter(module.lora_A.values())).weight.float()
        moved = (a @ moments[name] @ a.T).trace()  # sum over the rows' inputs x of |A x|^2
        assert moved <= torch.linalg.matrix_norm(a, 2) ** 2 * (1 - keep) * moments[name].trace() * 1.001
        assert moved < before[name] * 0.5  # and far less than before the projection
        assert torch.allclose(a @ projectors[name], a, atol=1e-5)  # projecting twice changes nothing


def test_self_cognition_run_keeps_every_adapter_in_its_null_space(tiny_model_dir, alpaca_file, tmp_path):
    cfg = C.check(_cfg(tiny_model_dir, alpaca_file, **{"identity.null_space": 0.99, "lora.r": 4}))
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    assert run(cfg, run_dir) == 0, rundir.tail_log(run_dir)
    log = (run_dir / "train.log").read_text(encoding="utf-8")
    assert "null-space LoRA:" in log and "0.99 of the general rows' energy" in log
    from safetensors.torch import load_file

    saved = load_file(next(run_dir.rglob("adapter_model.safetensors")))
    a_weights = [v for k, v in saved.items() if "lora_A" in k]
    assert a_weights and all(bool(v.abs().sum() > 0) for v in a_weights)  # trained, not projected to nothing


def test_null_space_refuses_a_run_without_distillation(tiny_model_dir, alpaca_file):
    errors = C.validate(_cfg(tiny_model_dir, alpaca_file, **{"identity.distill": 0.0, "identity.null_space": 0.99}))
    assert any("identity.null_space" in e and "identity.distill > 0" in e for e in errors), errors


def test_identity_projector_picks_the_directions_the_identity_rows_use_and_general_rows_do_not():
    from studio.engine.train.null_space import identity_projector

    general = torch.diag(torch.tensor([100.0, 1, 1, 1, 1, 1]))  # general text: strong in direction 0
    identity = torch.diag(torch.tensor([100.0, 1, 1, 40, 1, 1]))  # identity rows: also strong in 0, and in 3
    p = identity_projector(identity * 7, 7, general * 3, 3, 1)
    assert torch.allclose(p, torch.diag(torch.tensor([0.0, 0, 0, 1, 0, 0])), atol=1e-5)
    assert torch.allclose(p @ p, p, atol=1e-5)  # a projector
    assert torch.linalg.matrix_rank(identity_projector(identity, 1, general, 1, 4)) == 4


def test_moments_in_batches_equal_one_row_at_a_time(tiny_model_dir):
    torch.manual_seed(0)
    model = _peft(tiny_model_dir)
    rows = [torch.randint(5, 200, (n,)).tolist() for n in (7, 19, 3, 12)]
    masks = [[i % 2 == 0 for i in range(len(r))] for r in rows]
    for m in (None, masks):
        batched, single = input_moments(model, rows, m, batch_size=3), input_moments(model, rows, m, batch_size=1)
        for name in batched:
            assert torch.allclose(batched[name], single[name], rtol=1e-3, atol=1e-3), name
