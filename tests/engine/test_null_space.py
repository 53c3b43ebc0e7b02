"""lora.null_space: each LoRA A confined to the input directions the general rows barely use, kept there after steps."""

from __future__ import annotations

import torch

from studio.engine.train import null_space


def _lora_model(tiny_model_dir):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    return get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules="all-linear"))


class _Trainer:
    def __init__(self, model):
        self.model, self.callbacks = model, []

    def add_callback(self, cb):
        self.callbacks.append(cb)


def test_projector_keeps_the_weakest_directions_up_to_the_share():
    torch.manual_seed(0)
    basis, _ = torch.linalg.qr(torch.randn(6, 6))
    cov = basis @ torch.diag(torch.tensor([100.0, 50, 30, 1, 0.5, 0.01])) @ basis.T
    proj, kept = null_space.projector(cov, 0.01)  # 0.01 + 0.5 + 1 = 1.51 of 181.51 -> 0.83% <= 1%
    assert kept == 3
    assert torch.allclose(proj @ proj, proj, atol=1e-5) and torch.allclose(proj, proj.T, atol=1e-6)
    assert torch.allclose(proj @ basis[:, 3:], basis[:, 3:], atol=1e-5)  # the weak directions pass
    assert torch.allclose(proj @ basis[:, :3], torch.zeros(6, 3), atol=1e-5)  # the strong ones are removed
    assert null_space.projector(cov, 0.0)[1] == 0 and null_space.projector(cov, 1.0)[1] == 6


def test_general_inputs_barely_reach_the_adapter_and_stay_so_after_steps(tiny_model_dir):
    model = _lora_model(tiny_model_dir)
    rows = [list(range(5 + i, 40 + 3 * i)) for i in range(8)]
    covs = null_space.input_covariances(model, rows)
    layers = null_space.lora_layers(model)
    assert set(covs) == set(layers) and len(layers) == 7 * model.config.num_hidden_layers
    trainer = _Trainer(model)
    callback = null_space.use_null_space(trainer, rows, 0.01, log=lambda *_: None)
    assert trainer.callbacks == [callback] and len(callback.pairs) == len(layers)

    def confined():  # every A's rows lie where the general inputs hold at most 1% of their energy
        out = []
        for (weight, proj), cov in zip(callback.pairs, (covs[n] for n in layers)):
            assert float(torch.trace(proj @ cov) / torch.trace(cov)) <= 0.01 + 1e-6
            assert 0 < torch.linalg.matrix_rank(proj) < proj.shape[0]  # something kept, something removed
            out.append(torch.allclose(weight @ proj, weight, atol=1e-6) and weight.abs().sum() > 0)
        return all(out)

    assert confined()
    with torch.no_grad():  # an optimizer step moves A anywhere; the callback brings it back
        for layer in layers.values():
            layer.lora_A["default"].weight.add_(torch.randn_like(layer.lora_A["default"].weight))
    assert not confined()
    callback.on_step_end(None, None, None)
    assert confined()


def test_projector_with_a_target_prefers_the_directions_the_target_uses_and_the_general_rows_do_not():
    cov = torch.diag(torch.tensor([10.0, 10, 1, 1, 0.1, 0.1]))  # general energy: 22.2
    target = torch.diag(torch.tensor([50.0, 0, 5, 0, 0, 1]))  # ratios: 5, 0, 5, 0, 0, 10
    proj, kept = null_space.projector(cov, 0.06, target)  # e5 (0.1) then e2 (1.0): 1.1/22.2 = 5% <= 6%
    assert kept == 2
    assert torch.allclose(proj, torch.diag(torch.tensor([0.0, 0, 1, 0, 0, 1])), atol=1e-5)
    assert null_space.projector(cov, 0.06)[1] == 3  # plain: the three weakest (0.1 + 0.1 + 1 = 5.4%)
