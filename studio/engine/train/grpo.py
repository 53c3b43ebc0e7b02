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

from pathlib import Path

from transformers import TrainerCallback

from studio.config import RunConfig
from studio.engine.train import common

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
    """GRPOConfig or RLOOConfig: the shared arguments, one rollout batch per optimizer step, CPU-friendly sampling."""
    from trl import GRPOConfig, RLOOConfig

    rl = cfg.rl
    extra = {"loss_type": "dapo"} if cfg.method.stage == "grpo" else {"normalize_advantages": rl.whiten}
    cls = GRPOConfig if cfg.method.stage == "grpo" else RLOOConfig
    shared = dict(common.trainer_args(cfg, run_dir, has_eval=False),
                  per_device_train_batch_size=rl.rollout_batch_size * rl.num_generations, gradient_accumulation_steps=1,
                  bf16=False, activation_checkpointing=False, remove_unused_columns=False)
    return cls(**shared, num_generations=rl.num_generations, max_completion_length=rl.max_new_tokens,
               temperature=rl.temperature, top_k=rl.top_k, top_p=rl.top_p, beta=rl.kl_coef, num_iterations=rl.ppo_epochs,
               epsilon=rl.cliprange, generation_kwargs={"use_cache": True}, disable_dropout=True, log_completions=False,
               **extra)


def train(cfg: RunConfig, run_dir: Path, resume: bool, callback, log=print, reward_funcs: list | None = None) -> dict:
    """Train one GRPO/RLOO run into ``run_dir`` (``reward_funcs`` overrides the config's rewards, for tests)."""
    import torch
    from datasets import Dataset
    from trl import GRPOTrainer, RLOOTrainer

    from studio.engine.data.prompts import load_prompts
    from studio.engine.train.rewards import build_reward_funcs

    if cfg.training.frozen_dtype == "auto" and not torch.cuda.is_available():
        cfg.training.frozen_dtype = "float32"  # measured on CPU: sampling with bf16 frozen weights was ~25x slower than fp32
    tokenizer = common.start(cfg)
    prompts, report = load_prompts(cfg.data)
    common.write_data_report(run_dir, report)
    funcs = reward_funcs if reward_funcs is not None else build_reward_funcs(cfg.rl)
    stage = cfg.method.stage
    log(f"{stage}: {len(prompts)} prompts x {cfg.rl.num_generations} answers, rewards: "
        f"{', '.join(getattr(f, '__name__', 'reward') for f in funcs)}")
    # the base plus a peft_config (not a ready PeftModel): TRL's reference is then the base with the adapter off; a
    # PeftModel would get a second, frozen "ref" adapter saved next to the trained one
    model = common.build_model(cfg, log, attach_lora=False, checkpointing=False)
    cls = GRPOTrainer if stage == "grpo" else RLOOTrainer
    trainer = cls(model=model, reward_funcs=funcs, args=trainer_args(cfg, run_dir), processing_class=tokenizer,
                  peft_config=common.lora_config(cfg), train_dataset=Dataset.from_list([{"prompt": p} for p in prompts]),
                  callbacks=[MetricAliases(), callback])
    common.fit(trainer, run_dir, resume)
    out = common.save_final(trainer, tokenizer, cfg, run_dir)
    rewards = [h["reward"] for h in trainer.state.log_history if "reward" in h]
    kls = [h["kl"] for h in trainer.state.log_history if "kl" in h]
    return {"output": str(out), "step": trainer.state.global_step, "first_reward": rewards[0] if rewards else None,
            "final_reward": rewards[-1] if rewards else None, "final_kl": kls[-1] if kls else None}
