"""Preference optimisation on TRL: DPO (and its loss family: IPO, hinge, robust, ...) from pairs, KTO from unpaired rows.

Read top to bottom: load the preference data (pairs for DPO; labelled answers for KTO, pairs are split), build the policy
as SFT does, configure the trainer, train, save. With LoRA/QLoRA the trainer wraps the model itself from ``lora_config``
and ``ref_model=None``: the reference is the same model with the adapter switched off, so memory holds one model. With
full/freeze a frozen copy of the base is the reference. TRL logs ``rewards/chosen``, ``rewards/rejected``,
``rewards/margins`` and ``rewards/accuracies`` (DPO) or ``kl`` and the rewards (KTO); they reach ``metrics.jsonl`` through
the run callback. Run: ``studio train presets/dpo.yaml`` or ``studio train presets/kto.yaml``.
"""

from __future__ import annotations

from pathlib import Path

from studio.config import RunConfig
from studio.engine.train import common
from studio.engine.models import load_causal_lm


def trainer_args(cfg: RunConfig, run_dir: Path, has_eval: bool):
    """DPOConfig or KTOConfig: the shared arguments plus the ``preference`` section."""
    p = cfg.preference
    shared = dict(common.trainer_args(cfg, run_dir, has_eval), max_length=cfg.training.cutoff_len, beta=p.beta)
    if cfg.method.stage == "kto":
        from trl import KTOConfig

        # sequential: KTO estimates its KL term from mismatched rows of the same batch; the data is shuffled beforehand
        return KTOConfig(**shared, desirable_weight=p.desirable_weight, undesirable_weight=p.undesirable_weight,
                         train_sampling_strategy="sequential")
    from trl import DPOConfig

    return DPOConfig(**shared, loss_type=[p.loss_type], label_smoothing=p.label_smoothing)


def reference_model(cfg: RunConfig):
    """Full/freeze runs: a frozen copy of the base model. LoRA/QLoRA: None (the adapter-off policy is the reference)."""
    if cfg.method.finetuning_type in ("lora", "qlora"):
        return None
    ref = load_causal_lm(cfg.model.name_or_path, dtype=cfg.model.dtype, trust_remote_code=cfg.model.trust_remote_code)
    ref.config.use_cache = False
    ref.requires_grad_(False)
    return ref.eval()


def train(cfg: RunConfig, run_dir: Path, resume: bool, callback, log=print) -> dict:
    """Train one DPO or KTO run into ``run_dir``; returns what the runner records in status.json."""
    from datasets import Dataset
    from trl import DPOTrainer, KTOTrainer

    from studio.engine.data.preference import prepare_preference_data

    kto = cfg.method.stage == "kto"
    tokenizer = common.start(cfg)
    data = prepare_preference_data(cfg.data, "kto" if kto else "preference", cfg.training.seed)
    common.write_data_report(run_dir, data.report)
    extra = f", {data.report['desirable']} desirable / {data.report['undesirable']} undesirable" if kto else ""
    log(f"data: {data.report['train_rows']} train {'rows' if kto else 'pairs'}, {data.report['eval_rows']} eval, "
        f"{data.report['skipped_rows']} skipped{extra}")
    lora = cfg.method.finetuning_type in ("lora", "qlora")
    model = common.build_model(cfg, log, attach_lora=not lora)  # LoRA: the trainer attaches it (reference = adapter off)
    trainer_cls = KTOTrainer if kto else DPOTrainer
    trainer = trainer_cls(model=model, ref_model=reference_model(cfg), args=trainer_args(cfg, run_dir, bool(data.eval)),
                          processing_class=tokenizer, train_dataset=Dataset.from_list(data.train),
                          eval_dataset=Dataset.from_list(data.eval) if data.eval else None,
                          peft_config=common.lora_config(cfg) if lora else None, callbacks=[callback])
    if lora:
        n_train = sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)
        log(f"method={cfg.method.finetuning_type}: {n_train:,} trainable parameters (LoRA r={cfg.lora.r}); "
            "reference = the same model with the adapter off")
    common.use_fast_paths(trainer, cfg, log)
    result = common.fit(trainer, run_dir, resume)
    out = common.save_final(trainer, tokenizer, cfg, run_dir)
    return {"output": str(out), "train_loss": result.training_loss, "step": trainer.state.global_step,
            "final_loss": _last(trainer.state.log_history, "loss"), **reward_summary(trainer.state.log_history)}


def reward_summary(history: list[dict]) -> dict:
    """First and last logged training margin / accuracy (the first log is step 1, where policy == reference)."""
    out = {}
    for key, name in (("rewards/margins", "margin"), ("rewards/accuracies", "accuracy"), ("kl", "kl")):
        values = [h[key] for h in history if key in h]
        if values:
            out[f"{name}_first"], out[f"{name}_last"] = values[0], values[-1]
    evals = [h for h in history if "eval_rewards/margins" in h]
    if evals:
        out["eval_margin"] = evals[-1]["eval_rewards/margins"]
        out["eval_accuracy"] = evals[-1].get("eval_rewards/accuracies")
    return out


def _last(history: list[dict], key: str):
    values = [h[key] for h in history if key in h]
    return values[-1] if values else None
