"""Rules across the fields of a ``RunConfig``: the combinations ``config.validate`` refuses although every field is in its
own range (a stage with a fine-tuning type it cannot train, self-cognition options that need self-distillation, ...),
each message naming the key and why; the syntax of ``lora.layers``; which stages are RL and which learn from
preferences.

Per-field bounds and choices stay with the fields (``studio.config``); this module imports nothing heavy.
"""

from __future__ import annotations

import re

from studio.rewardspec import reward_errors

RL_STAGES = ("ppo", "grpo", "rloo")  # sample answers and score them; the reference is the adapter-off model
PREFERENCE_STAGES = ("rm", "dpo", "kto")

def parse_layers(text: str) -> list[int] | None:
    """``lora.layers`` as sorted layer indices ('15-29', '0,2,4'); None for empty (all layers). ValueError names the part."""
    if not text.strip():
        return None
    found = set()
    for part in (p.strip() for p in text.split(",")):
        m = re.fullmatch(r"(\d{1,4})(?:\s*-\s*(\d{1,4}))?", part)  # no model has 10,000 layers
        if not m or (m.group(2) is not None and int(m.group(2)) < int(m.group(1))):
            raise ValueError(f"{part!r} is not a layer index or an ascending range like '15-29'")
        found.update(range(int(m.group(1)), int(m.group(2) or m.group(1)) + 1))
    return sorted(found)


def cross_field_errors(cfg, require_data: bool = True) -> list[str]:
    """Every combination of ``cfg``'s fields that cannot run, each naming the key and why (``require_data``: a run with
    no dataset is one). Empty list = none."""
    errors = []
    try:
        parse_layers(cfg.lora.layers)
    except ValueError as exc:
        errors.append(f"lora.layers={cfg.lora.layers!r}: {exc}")
    if require_data and not cfg.data.datasets and not cfg.identity.name_en.strip():
        errors.append("data.datasets: no dataset given (add at least one file or folder)")
    available = ("sft", "pt") + PREFERENCE_STAGES + RL_STAGES
    if cfg.method.stage not in available:
        errors.append(f"method.stage={cfg.method.stage!r}: not available in this version (available: {', '.join(available)})")
    if cfg.method.stage in RL_STAGES:
        errors += _rl_errors(cfg)
    if cfg.method.stage == "pt" and cfg.identity.name_en.strip():
        errors.append("identity.name_en: self-cognition trains question/answer rows (stage sft), not plain text (stage pt)")
    if cfg.identity.distill > 0 and not cfg.identity.name_en.strip():
        errors.append(f"identity.distill={cfg.identity.distill}: self-distillation keeps the general rows of a "
                      "self-cognition run at the base; set identity.name_en too (or distill 0)")
    if cfg.identity.subspace > 0 and cfg.identity.distill <= 0:
        errors.append(f"identity.subspace={cfg.identity.subspace}: the identity subspace is found against the general "
                      "rows, which self-distillation marks: set identity.distill > 0")
    if cfg.identity.identity_weight != 1.0 and cfg.identity.distill <= 0:
        errors.append(f"identity.identity_weight={cfg.identity.identity_weight}: weighting the identity rows works with "
                      "self-distillation on (identity.distill > 0), which tells them from the general rows")
    if cfg.identity.distill > 0 and (cfg.method.stage != "sft" or cfg.method.finetuning_type not in ("lora", "qlora")):
        errors.append(f"identity.distill={cfg.identity.distill}: self-distillation needs stage sft with finetuning_type lora "
                      "or qlora (the base is the model with its adapter off)")
    if cfg.method.stage == "rm" and cfg.method.finetuning_type == "qlora":
        errors.append("method.finetuning_type='qlora': not available for stage rm (the reward model is saved merged; use lora)")
    if cfg.method.stage == "kto" and cfg.training.per_device_train_batch_size < 2:
        errors.append("training.per_device_train_batch_size: KTO needs >= 2 (its KL estimate pairs rows within a batch)")
    if cfg.data.val_size >= 1 and not float(cfg.data.val_size).is_integer():
        errors.append(f"data.val_size={cfg.data.val_size}: a row count (>=1) must be a whole number")
    return errors


def _rl_errors(cfg) -> list[str]:
    errors = reward_errors(cfg.rl)
    if cfg.method.finetuning_type not in ("lora", "qlora"):
        errors.append(f"method.finetuning_type={cfg.method.finetuning_type!r}: {cfg.method.stage} trains a LoRA adapter "
                      "(the reference is the same model with the adapter off): use lora or qlora")
    return errors
