"""Reward modelling on TRL's RewardTrainer: a score head on the last token, trained so chosen answers outscore rejected ones.

Read top to bottom: load the preference pairs, build the base model with a one-output sequence-classification head (LoRA,
freeze or full, as SFT builds them; the new head always trains), measure held-out pairwise accuracy before training
(chance level), train with the Bradley-Terry loss, measure it again, save. The result is a plain, merged model folder
``<run>/reward_model/`` (safetensors, tokenizer, ``pad_token_id`` set) that loads with
``AutoModelForSequenceClassification.from_pretrained(dir, use_safetensors=True)``: RLHF runs score answers with it.
Run: ``studio train presets/reward_model.yaml``.
"""

from __future__ import annotations

from pathlib import Path

from studio.config import REWARD_MODEL_DIR, RunConfig
from studio.engine.train import common


def trainer_args(cfg: RunConfig, run_dir: Path, has_eval: bool):
    from trl import RewardConfig

    # the best checkpoint is chosen by eval_loss (the pairwise log-loss): accuracy saturates at 1.0 and would keep the first
    return RewardConfig(**common.trainer_args(cfg, run_dir, has_eval), max_length=cfg.training.cutoff_len,
                        center_rewards_coefficient=cfg.preference.center_rewards or None)


def train(cfg: RunConfig, run_dir: Path, resume: bool, callback, log=print) -> dict:
    """Train one reward model into ``run_dir``; returns what the runner records in status.json (held-out accuracy too)."""
    from datasets import Dataset
    from trl import RewardTrainer

    from studio.engine.data.preference import prepare_preference_data

    tokenizer = common.start(cfg)
    data = prepare_preference_data(cfg.data, "preference", cfg.training.seed)
    common.write_data_report(run_dir, data.report)
    log(f"data: {data.report['train_rows']} train pairs, {data.report['eval_rows']} held-out pairs, "
        f"{data.report['skipped_rows']} skipped")
    if not data.eval:
        log("no held-out pairs (data.val_size=0): pairwise accuracy is only measured on training batches")
    model = common.build_model(cfg, log, task="SEQ_CLS")
    trainer = RewardTrainer(model=model, args=trainer_args(cfg, run_dir, bool(data.eval)), processing_class=tokenizer,
                            train_dataset=Dataset.from_list(data.train),
                            eval_dataset=Dataset.from_list(data.eval) if data.eval else None, callbacks=[callback])
    before = trainer.evaluate() if data.eval and not resume else {}  # logged at step 0: the chance-level baseline
    result = common.fit(trainer, run_dir, resume, eval_first=False)  # measured just above
    after = trainer.evaluate() if data.eval else {}
    out = save_reward_model(trainer, tokenizer, run_dir / REWARD_MODEL_DIR)
    history = trainer.state.log_history
    train_acc = [h["accuracy"] for h in history if "accuracy" in h]
    summary = {"output": str(out), "train_loss": result.training_loss, "step": trainer.state.global_step,
               "final_loss": next((h["loss"] for h in reversed(history) if "loss" in h), None),
               "accuracy_last": train_acc[-1] if train_acc else None,
               "eval_accuracy_before": before.get("eval_accuracy"), "eval_accuracy": after.get("eval_accuracy"),
               "eval_margin": after.get("eval_margin")}
    if after:
        log(f"held-out pairwise accuracy: {summary['eval_accuracy_before']} before -> {summary['eval_accuracy']} after "
            f"({len(data.eval)} pairs)")
    return summary


def save_reward_model(trainer, tokenizer, out: Path) -> Path:
    """A merged, self-contained sequence-classification folder (LoRA folded in), safetensors only."""
    model = trainer.accelerator.unwrap_model(trainer.model)
    if hasattr(model, "merge_and_unload"):  # a PeftModel: fold the adapter and the trained head copy into plain weights
        model = model.merge_and_unload()
    model.config.pad_token_id = tokenizer.pad_token_id  # the head scores the last non-pad token
    model.config.use_cache = True
    if trainer.is_world_process_zero():
        model.save_pretrained(out, safe_serialization=True)
        tokenizer.save_pretrained(out)
    return out


def load_reward_model(path: str | Path):
    """(model, tokenizer) of a saved reward model: ``<run>/reward_model/`` or a run folder holding one. Safetensors only."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    path = Path(path)
    if (path / REWARD_MODEL_DIR / "config.json").is_file():
        path = path / REWARD_MODEL_DIR
    model = AutoModelForSequenceClassification.from_pretrained(path, use_safetensors=True)
    return model.eval(), AutoTokenizer.from_pretrained(path)


def score(model, tokenizer, conversations: list[list[dict]], batch_size: int = 8) -> list[float]:
    """The reward of each conversation (messages ending with the assistant answer), rendered with the chat template."""
    import torch

    texts = [tokenizer.apply_chat_template(c, tokenize=False) for c in conversations]
    scores: list[float] = []
    tokenizer.padding_side = "right"
    for i in range(0, len(texts), batch_size):
        enc = tokenizer(texts[i:i + batch_size], return_tensors="pt", padding=True, add_special_tokens=False)
        with torch.no_grad():
            scores += model(**enc).logits[:, 0].float().tolist()
    return scores
