"""GRPO and RLOO (``method.stage=grpo|rloo``) on TRL 1.16's GRPOTrainer / RLOOTrainer, with the studio's rewards.

Run it: ``studio train presets/grpo.yaml`` (or ``--set method.stage=rloo``). Each step samples ``rl.num_generations``
answers for each of ``rl.rollout_batch_size`` prompts, scores them with the reward model and/or rule rewards
(``rewards.py``), and pushes the policy towards the answers that beat their group (GRPO: group-normalised advantages;
RLOO: each answer against the mean of the others), with a KL penalty ``rl.kl_coef`` (TRL's ``beta``) to the reference:
the same model with the LoRA adapter off, so one model is in memory. No vLLM: generation runs in transformers.

TRL's metrics land in metrics.jsonl as they are (``reward``, ``reward_std``, ``kl``, ``entropy``,
``completions/mean_length``, ``rewards/<name>/mean``, ...) plus the studio's common names ``response_length`` and
``clip_fraction``, so the Monitor tab charts PPO, GRPO and RLOO runs alike.
"""

from __future__ import annotations

import json
from pathlib import Path

from transformers import TrainerCallback

from studio.config import RunConfig
from studio.engine import rundir

# TRL name -> the name PPO logs too (both are kept)
METRIC_ALIASES = {"completions/mean_length": "response_length", "clip_ratio/region_mean": "clip_fraction"}


class MetricAliases(TrainerCallback):
    """Adds the studio's metric names to TRL's log dict before RunFolderCallback (listed after it) writes the line."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs is not None:
            for trl_name, name in METRIC_ALIASES.items():
                if trl_name in logs and name not in logs:
                    logs[name] = logs[trl_name]


def trainer_args(cfg: RunConfig, run_dir: Path):
    """GRPOConfig or RLOOConfig from the run config: one rollout batch per optimizer step, CPU-friendly defaults."""
    import torch
    from trl import GRPOConfig, RLOOConfig

    t, rl = cfg.training, cfg.rl
    extra = {"loss_type": "dapo"} if cfg.method.stage == "grpo" else {"normalize_advantages": rl.whiten}
    cls = GRPOConfig if cfg.method.stage == "grpo" else RLOOConfig
    return cls(
        output_dir=str(run_dir / rundir.CHECKPOINTS), learning_rate=t.learning_rate, num_train_epochs=t.num_train_epochs,
        max_steps=t.max_steps, per_device_train_batch_size=rl.rollout_batch_size * rl.num_generations,
        gradient_accumulation_steps=1, num_generations=rl.num_generations, max_completion_length=rl.max_new_tokens,
        temperature=rl.temperature, top_k=rl.top_k, top_p=rl.top_p, beta=rl.kl_coef, num_iterations=rl.ppo_epochs,
        epsilon=rl.cliprange, generation_kwargs={"use_cache": True}, lr_scheduler_type=t.lr_scheduler_type,
        warmup_steps=t.warmup_steps, weight_decay=t.weight_decay, max_grad_norm=t.max_grad_norm if t.max_grad_norm > 0 else None,
        seed=t.seed, data_seed=t.seed, logging_steps=t.logging_steps, logging_first_step=True,
        save_strategy="steps" if t.save_steps else "no", save_steps=t.save_steps or 500, save_total_limit=t.save_total_limit,
        use_cpu=not torch.cuda.is_available(), bf16=False, activation_checkpointing=False, disable_dropout=True,
        report_to=[], remove_unused_columns=False, dataloader_num_workers=0, log_completions=False, **extra,
    )


def train(cfg: RunConfig, run_dir: Path, resume: bool, callback, log=print, reward_funcs: list | None = None) -> dict:
    """Train one GRPO/RLOO run into ``run_dir`` (``reward_funcs`` overrides the config's rewards, for tests)."""
    import torch
    from datasets import Dataset
    from trl import GRPOTrainer, RLOOTrainer

    from studio.engine.models import load_tokenizer
    from studio.engine.prompts import load_prompts
    from studio.engine.rewards import build_reward_funcs
    from studio.engine.sft import latest_checkpoint, save_final

    if cfg.training.num_threads:
        torch.set_num_threads(cfg.training.num_threads)
    if cfg.training.frozen_dtype == "auto" and not torch.cuda.is_available():
        cfg.training.frozen_dtype = "float32"  # measured on CPU: sampling with bf16 frozen weights was ~25x slower than fp32
    torch.manual_seed(cfg.training.seed)
    tokenizer = load_tokenizer(cfg.model.name_or_path, cfg.model.chat_template, cfg.model.trust_remote_code)
    prompts, report = load_prompts(cfg.data)
    (run_dir / rundir.DATA_REPORT).write_text(json.dumps(report, indent=2, ensure_ascii=False), encoding="utf-8")
    funcs = reward_funcs if reward_funcs is not None else build_reward_funcs(cfg.rl)
    stage = cfg.method.stage
    log(f"{stage}: {len(prompts)} prompts x {cfg.rl.num_generations} answers, rewards: "
        f"{', '.join(getattr(f, '__name__', 'reward') for f in funcs)}")
    model, peft_cfg = base_and_lora(cfg, log)
    cls = GRPOTrainer if stage == "grpo" else RLOOTrainer
    trainer = cls(model=model, reward_funcs=funcs, args=trainer_args(cfg, run_dir), processing_class=tokenizer,
                  peft_config=peft_cfg,
                  train_dataset=Dataset.from_list([{"prompt": p} for p in prompts]),
                  callbacks=[MetricAliases(), callback])
    checkpoint = latest_checkpoint(run_dir) if resume else None
    if resume and checkpoint is None:
        raise FileNotFoundError(f"{run_dir / rundir.CHECKPOINTS}: no checkpoint to resume from")
    trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    out = save_final(trainer, tokenizer, cfg, run_dir)
    rewards = [h["reward"] for h in trainer.state.log_history if "reward" in h]
    kls = [h["kl"] for h in trainer.state.log_history if "kl" in h]
    return {"output": str(out), "step": trainer.state.global_step, "first_reward": rewards[0] if rewards else None,
            "final_reward": rewards[-1] if rewards else None, "final_kl": kls[-1] if kls else None}


def base_and_lora(cfg: RunConfig, log=print):
    """The frozen base (bf16 where fast, or 4/8-bit for qlora) and the LoRA config TRL wraps it with.

    Handing TRL the base plus a ``peft_config`` (not a ready PeftModel) makes its reference the base with the adapter
    off; a PeftModel would get a second, frozen "ref" adapter saved next to the trained one.
    """
    from peft import LoraConfig, prepare_model_for_kbit_training

    from studio.engine.models import load_causal_lm
    from studio.engine.sft import _load_quantized, frozen_dtype

    if cfg.method.finetuning_type == "qlora":
        model = prepare_model_for_kbit_training(_load_quantized(cfg), use_gradient_checkpointing=False)
    else:
        model = load_causal_lm(cfg.model.name_or_path, dtype="float32", trust_remote_code=cfg.model.trust_remote_code)
        model.to(frozen_dtype(cfg))
    lc = cfg.lora
    targets = lc.target_modules.strip()
    names = [m.strip() for m in targets.split(",") if m.strip()]
    target_modules = "all-linear" if targets in ("", "all-linear", "all") else names
    peft_cfg = LoraConfig(r=lc.r, lora_alpha=lc.alpha, lora_dropout=lc.dropout, target_modules=target_modules,
                          use_rslora=lc.use_rslora, use_dora=lc.use_dora, task_type="CAUSAL_LM")
    log(f"method={cfg.method.finetuning_type}: LoRA r={lc.r} alpha={lc.alpha} on {targets or 'all-linear'}")
    return model, peft_cfg
