"""The baseline for benchmarks/train_throughput.py: a plain TRL SFTTrainer script with TRL's defaults.

Only what must be set is set: the same model, data, LoRA (all linear layers), batch, cutoff, lr, epochs and seed as the
studio run, and ``use_cpu=True`` on a machine without GPU (TRL's bf16 default refuses to start otherwise). TRL keeps its
defaults for everything else (gradient checkpointing on, bf16 autocast, padded batches; completion-only loss on
prompt/completion rows, every token on ``messages`` rows). Prints one JSON line with the results.

Usage: python benchmarks/plain_trl_sft.py MODEL_DIR DATA.jsonl OUT_DIR LR EPOCHS CUTOFF BATCH LORA_R LORA_ALPHA SEED
"""

import json
import sys
import time


def main(model_dir: str, data_path: str, out_dir: str, lr: float, epochs: float, cutoff: int, batch: int, r: int,
         alpha: int, seed: int) -> None:
    import torch
    from datasets import load_dataset
    from peft import LoraConfig
    from trl import SFTConfig, SFTTrainer

    rows = load_dataset("json", data_files=data_path, split="train")
    args = SFTConfig(output_dir=out_dir, per_device_train_batch_size=batch, max_length=cutoff, learning_rate=lr,
                     num_train_epochs=epochs, logging_steps=1, report_to=[], save_strategy="no",
                     use_cpu=not torch.cuda.is_available(), seed=seed, lr_scheduler_type="linear")
    trainer = SFTTrainer(model=model_dir, args=args, train_dataset=rows,
                         peft_config=LoraConfig(r=r, lora_alpha=alpha, target_modules="all-linear", task_type="CAUSAL_LM"))
    start = time.time()
    out = trainer.train()
    seconds = time.time() - start
    print(json.dumps({"train_seconds": out.metrics.get("train_runtime", seconds), "final_loss": out.training_loss}))


if __name__ == "__main__":
    a = sys.argv[1:]
    main(a[0], a[1], a[2], float(a[3]), float(a[4]), int(a[5]), int(a[6]), int(a[7]), int(a[8]), int(a[9]))
