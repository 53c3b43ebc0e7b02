"""The baseline for benchmarks/train_throughput.py: a plain TRL SFTTrainer script with TRL's defaults.

Only what must be set is set: the same model, data, LoRA (r8 all-linear), batch, cutoff, lr and steps as the studio run,
and ``use_cpu=True`` on a machine without GPU (TRL's bf16 default refuses to start otherwise). TRL keeps its defaults for
everything else (gradient checkpointing on, bf16 autocast, padded batches). Prints one JSON line with the results.
Usage: python benchmarks/plain_trl_sft.py MODEL_DIR DATA.jsonl OUT_DIR LR STEPS
"""

import json
import sys
import time


def main(model_dir: str, data_path: str, out_dir: str, lr: float, steps: int) -> None:
    import torch
    from datasets import load_dataset
    from peft import LoraConfig
    from trl import SFTConfig, SFTTrainer

    rows = load_dataset("json", data_files=data_path, split="train")
    args = SFTConfig(output_dir=out_dir, per_device_train_batch_size=8, max_length=128, learning_rate=lr, max_steps=steps,
                     logging_steps=1, report_to=[], save_strategy="no", use_cpu=not torch.cuda.is_available(), seed=0)
    trainer = SFTTrainer(model=model_dir, args=args, train_dataset=rows,
                         peft_config=LoraConfig(r=8, lora_alpha=16, target_modules="all-linear", task_type="CAUSAL_LM"))
    start = time.time()
    out = trainer.train()
    seconds = time.time() - start
    tokens = trainer.state.log_history[-2].get("num_tokens") or sum(len(x) for x in trainer.train_dataset["input_ids"])
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    print(json.dumps({"train_seconds": seconds, "tokens": tokens, "train_loss": out.training_loss, "last_loss": losses[-1]}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4]), int(sys.argv[5]))
