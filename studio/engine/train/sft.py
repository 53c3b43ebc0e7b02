"""Supervised fine-tuning: LoRA, QLoRA (bitsandbytes 4/8-bit), freeze (last N layers) and full, on TRL's SFTTrainer.

Read top to bottom: build the model for the chosen method, render the data with assistant-only labels, configure the
trainer with the defaults measured fastest on CPU, train, save. The speed choices (see benchmarks/train_throughput.py):
- padding-free batches: the rows of a batch are concatenated and told apart by ``position_ids`` (exact with SDPA as long
  as ``use_cache`` is off), so no compute is spent on pad tokens;
- no gradient checkpointing unless memory needs it;
- frozen base weights in bfloat16 under LoRA where the hardware has bf16 matmuls; the trainable LoRA weights stay fp32;
- no bf16 autocast (it was slower on CPU).
"""

from __future__ import annotations

from pathlib import Path

from studio.config import RunConfig
from studio.engine.train import common


def sft_args(cfg: RunConfig, run_dir: Path, has_eval: bool):
    from trl import SFTConfig

    padding_free = cfg.training.batching == "padding_free"
    return SFTConfig(
        **common.trainer_args(cfg, run_dir, has_eval), padding_free=padding_free, max_length=None,
        train_sampling_strategy="random" if padding_free else "group_by_length",
        dataset_kwargs={"skip_prepare_dataset": True}, remove_unused_columns=False, include_num_input_tokens_seen="no",
    )


def train(cfg: RunConfig, run_dir: Path, resume: bool, callback, extra_specs: list[str] = (), log=print) -> dict:
    """Train one SFT run into ``run_dir``; returns what the runner records in status.json."""
    trainer, tokenizer, _ = build_trainer(cfg, run_dir, [callback], extra_specs, log)
    result = common.fit(trainer, run_dir, resume)
    out = common.save_final(trainer, tokenizer, cfg, run_dir)
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    evals = [h["eval_loss"] for h in trainer.state.log_history if "eval_loss" in h]
    return {"output": str(out), "final_loss": losses[-1] if losses else None, "train_loss": result.training_loss,
            "best_eval_loss": min(evals) if evals else None, "step": trainer.state.global_step,
            "best_checkpoint": trainer.state.best_model_checkpoint}


def build_trainer(cfg: RunConfig, run_dir: Path, callbacks: list, extra_specs: list[str] = (), log=print):
    """(trainer, tokenizer, prepared data) for one SFT run, ready to ``fit`` (benchmarks/profile_step.py profiles it)."""
    from datasets import Dataset
    from trl import SFTTrainer

    from studio.engine.data.load import prepare_pt_data, prepare_sft_data

    tokenizer = common.start(cfg)
    prepare = prepare_pt_data if cfg.method.stage == "pt" else prepare_sft_data  # pt: plain text, packed, all tokens trained
    distill = distill_specs(cfg, extra_specs)
    kwargs = {"distill_specs": distill} if distill else {}
    data = prepare(cfg.data, tokenizer, cfg.training.cutoff_len, cfg.training.seed, extra_specs, **kwargs)
    common.write_data_report(run_dir, data.report)
    log(f"data: {data.report['train_rows']} train rows, {data.report['eval_rows']} eval rows, "
        f"{data.report['truncated_rows']} truncated at cutoff_len={cfg.training.cutoff_len}, "
        f"{data.report['dropped_fully_truncated']} dropped (nothing left to train on), {data.report['skipped_rows']} skipped")
    model = common.build_model(cfg, log)
    args = sft_args(cfg, run_dir, has_eval=bool(data.eval))
    trainer = SFTTrainer(model=model, args=args, processing_class=tokenizer, train_dataset=Dataset.from_list(data.train),
                         eval_dataset=Dataset.from_list(data.eval) if data.eval else None, callbacks=callbacks)
    if distill and cfg.identity.subspace > 0:  # before the fast paths: a plain forward of the base
        from studio.engine.train.identity_subspace import use_identity_subspace

        use_identity_subspace(trainer, [r["input_ids"] for r in data.train if not r.get("distill")],
                              [r["input_ids"] for r in data.train if r.get("distill")], cfg.identity.subspace, log)
    common.use_fast_paths(trainer, cfg, log)
    if distill:
        from studio.engine.train.distill import use_self_distillation

        use_self_distillation(trainer, cfg.identity.distill, log, general_ce=cfg.identity.replay_ce,
                              identity_weight=cfg.identity.identity_weight)
    return trainer, tokenizer, data


def distill_specs(cfg: RunConfig, extra_specs: list[str]) -> tuple[str, ...]:
    """The general datasets whose rows are distilled (identity.distill > 0): every one but the identity rows."""
    if cfg.identity.distill <= 0 or cfg.method.stage != "sft" or not cfg.identity.name_en.strip():
        return ()
    from studio.engine.selfcog.identity import IDENTITY_FILE

    return tuple(s for s in list(cfg.data.datasets) + list(extra_specs) if Path(s).name != IDENTITY_FILE)


