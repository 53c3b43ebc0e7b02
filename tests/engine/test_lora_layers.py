"""lora.layers: LoRA on chosen decoder layers only (the others go to PEFT's exclude_modules and keep their weights exactly)."""
from __future__ import annotations

import re

import pytest

from studio import config as C


def test_layer_text_reads_as_sorted_indices_and_bad_text_is_named():
    assert C.parse_layers("") is None
    assert C.parse_layers(" 15-17, 3 ,3") == [3, 15, 16, 17]
    for bad in ("3-1", "x", "1,,2", "-2", "0-99999999"):
        cfg = C.apply_overrides(C.RunConfig(), {"lora.layers": bad})
        errors = C.validate(cfg, require_data=False)
        assert any(e.startswith(f"lora.layers={bad!r}") for e in errors), (bad, errors)


def _adapted_layers(model) -> dict[int, set[str]]:
    found: dict[int, set[str]] = {}
    for name, _ in model.named_parameters():
        m = re.search(r"\.layers\.(\d+)\.(?:self_attn|mlp)\.(\w+)\.lora_A", name)
        if m:
            found.setdefault(int(m.group(1)), set()).add(m.group(2))
    return found


def test_only_the_chosen_layers_get_adapters_on_every_linear_module(tiny_model_dir):
    from transformers import AutoModelForCausalLM

    from studio.engine.train import common

    every = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
    for layers, want in (("", {0: every, 1: every}), ("1", {1: every}), ("0", {0: every})):
        cfg = C.apply_overrides(C.RunConfig(), {"lora.layers": layers})
        model = common.wrap_lora(AutoModelForCausalLM.from_pretrained(tiny_model_dir), common.lora_config(cfg))
        assert _adapted_layers(model) == want, layers


def test_a_layer_the_model_does_not_have_is_refused_with_its_range(tiny_model_dir):
    from transformers import AutoModelForCausalLM

    from studio.engine.models import ModelLoadError
    from studio.engine.train import common

    cfg = C.apply_overrides(C.RunConfig(), {"lora.layers": "1-2"})
    with pytest.raises(ModelLoadError, match=r"lora.layers='1-2': layer 2 .* 2 decoder layers \(0-1\)"):
        common.check_lora_layers(AutoModelForCausalLM.from_pretrained(tiny_model_dir), cfg)
    common.check_lora_layers(AutoModelForCausalLM.from_pretrained(tiny_model_dir),
                             C.apply_overrides(C.RunConfig(), {"lora.layers": "0-1"}))


def test_the_training_model_is_built_with_the_layers_asked_for_or_refused(tiny_model_dir):
    from studio.engine.models import ModelLoadError
    from studio.engine.train import common

    cfg = C.apply_overrides(C.RunConfig(), {"model.name_or_path": str(tiny_model_dir), "lora.layers": "1"})
    assert set(_adapted_layers(common.build_model(cfg, log=lambda *_: None))) == {1}
    with pytest.raises(ModelLoadError, match="lora.layers='5'"):
        common.build_model(C.apply_overrides(cfg, {"lora.layers": "5"}), log=lambda *_: None)
