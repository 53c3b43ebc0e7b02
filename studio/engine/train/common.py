"""What every training method shares, in one place: the model to train (LoRA, QLoRA, freeze, full; causal LM or reward
head), the PEFT LoRA config, the trainer arguments, the optimizer hyper-parameters, and start / fit / save.

Each config field reaches its library here once: ``lora.*`` in ``lora_config``, ``training.*`` in ``hyperparameters``
(then ``trainer_args`` for TRL/Transformers trainers and ``optimizer`` for the studio's own PPO loop), ``quantization.*``
in ``load_quantized``, ``freeze.*`` in ``apply_freeze``. The method modules (sft, dpo, reward_model, ppo, grpo) read top to
bottom and call these.
"""

from __future__ import annotations

import importlib.util
import contextlib
import json
import os
import re
from pathlib import Path

from studio.config import RunConfig, parse_layers
from studio.engine import rundir
from studio.engine.models import ModelLoadError, load_causal_lm, load_sequence_classifier, load_tokenizer


def bf16_capable() -> bool:
    """bf16 matmuls that are fast: AMX/AVX512-BF16 CPUs or bf16 GPUs."""
    import torch

    if torch.cuda.is_available():
        return torch.cuda.is_bf16_supported()
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


def frozen_dtype(cfg: RunConfig):
    import torch

    choice = cfg.training.frozen_dtype
    if choice == "auto":
        return torch.bfloat16 if bf16_capable() else torch.float32
    return {"float32": torch.float32, "bfloat16": torch.bfloat16}[choice]


# ----------------------------------------------------------------------------------------------------------------------------
# Models per method


def build_model(cfg: RunConfig, log=print, task: str = "CAUSAL_LM", attach_lora: bool = True,
                checkpointing: bool | None = None):
    """The model to train, with exactly the intended parameters trainable.

    ``task="SEQ_CLS"`` builds a reward model (the backbone with a new one-output score head, which always trains).
    ``attach_lora=False`` prepares the base for LoRA but leaves the wrapping to the trainer, given ``lora_config(cfg)``:
    DPO/KTO/GRPO/RLOO then use the same model with the adapter off as their reference, so memory holds one model.
    ``checkpointing`` (QLoRA's k-bit preparation) defaults to ``training.gradient_checkpointing``.
    """
    kind = cfg.method.finetuning_type
    if kind == "qlora":
        model = load_quantized(cfg)
    else:
        dtype = cfg.model.dtype if kind in ("full", "freeze") else "float32"
        load = load_sequence_classifier if task == "SEQ_CLS" else load_causal_lm
        model = load(cfg.model.name_or_path, dtype=dtype, trust_remote_code=cfg.model.trust_remote_code)
    model.config.use_cache = False  # a KV cache in training is waste, and it breaks padding-free masking
    if kind in ("lora", "qlora"):
        check_lora_layers(model, cfg)
        model = prepare_for_lora(model, cfg, task, want_checkpointing(cfg) if checkpointing is None else checkpointing)
        use_gpu_attention(model, log)  # after the frozen weights went to bf16
        if not attach_lora:
            log(f"method={kind}: LoRA r={cfg.lora.r} alpha={cfg.lora.alpha} on {cfg.lora.target_modules or 'all-linear'}"
                + (f" of layers {cfg.lora.layers}" if cfg.lora.layers.strip() else "") + " (attached by the trainer)")
            return model
        model = wrap_lora(model, lora_config(cfg, task))
    elif kind == "freeze":
        apply_freeze(model, cfg, extra=("score",) if task == "SEQ_CLS" else ())
    if kind in ("full", "freeze"):
        use_gpu_attention(model, log)
    n_train = sum(p.numel() for p in model.parameters() if p.requires_grad)
    n_all = sum(p.numel() for p in model.parameters())
    log(f"method={kind}: {n_train:,} trainable of {n_all:,} parameters ({100 * n_train / max(n_all, 1):.2f}%)")
    return model


def use_gpu_attention(model, log=print) -> bool:
    """On CUDA, FlashAttention 2 when ``flash_attn`` is installed and the weights are half precision (else SDPA stays)."""
    import importlib.util

    import torch

    if not torch.cuda.is_available() or importlib.util.find_spec("flash_attn") is None:
        return False
    if next(model.parameters()).dtype not in (torch.bfloat16, torch.float16):
        return False
    model.set_attn_implementation("flash_attention_2")
    log("attention: flash_attention_2")
    return True


def load_quantized(cfg: RunConfig):
    import torch
    from transformers import BitsAndBytesConfig

    try:
        import bitsandbytes  # noqa: F401
    except ImportError as exc:
        raise ModelLoadError("QLoRA needs bitsandbytes: pip install bitsandbytes") from exc
    q = cfg.quantization
    compute = {"auto": torch.bfloat16, "float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
    bnb = BitsAndBytesConfig(load_in_4bit=q.bits == 4, load_in_8bit=q.bits == 8, bnb_4bit_quant_type=q.quant_type,
                             bnb_4bit_use_double_quant=q.double_quant, bnb_4bit_compute_dtype=compute[q.compute_dtype])
    try:
        return load_causal_lm(cfg.model.name_or_path, dtype="float32", trust_remote_code=cfg.model.trust_remote_code,
                              quantization_config=bnb)
    except ModelLoadError as exc:
        raise ModelLoadError(f"{exc}\nQLoRA {q.bits}-bit could not load on this machine (bitsandbytes "
                             f"{getattr(bitsandbytes, '__version__', '?')}); use method.finetuning_type=lora instead") from exc


def lora_config(cfg: RunConfig, task: str = "CAUSAL_LM"):
    """The PEFT LoraConfig of ``cfg.lora`` (SEQ_CLS: peft also trains and saves the score head in full)."""
    from peft import LoraConfig

    lc = cfg.lora
    targets = lc.target_modules.strip()
    target_modules = "all-linear" if targets in ("", "all-linear", "all") else [t.strip() for t in targets.split(",") if t.strip()]
    return LoraConfig(r=lc.r, lora_alpha=lc.alpha, lora_dropout=lc.dropout, target_modules=target_modules,
                      exclude_modules=other_layers_pattern(parse_layers(lc.layers)), use_rslora=lc.use_rslora,
                      use_dora=lc.use_dora, task_type=task)


def other_layers_pattern(layers: list[int] | None) -> str | None:
    """A regex of the modules in every decoder layer but ``layers`` (None: all layers adapted). PEFT's own
    layers_to_transform refuses target_modules='all-linear', so the other layers are excluded instead."""
    if layers is None:
        return None
    keep = "|".join(str(i) for i in layers)
    return rf".*\.(?:layers|h|blocks)\.(?!(?:{keep})\.)\d+\..*"


def check_lora_layers(model, cfg: RunConfig) -> None:
    """lora.layers must name layers the model has (PEFT would silently adapt fewer)."""
    layers = parse_layers(cfg.lora.layers)
    n_layers = model.config.get_text_config().num_hidden_layers
    if layers and max(layers) >= n_layers:
        raise ModelLoadError(f"lora.layers={cfg.lora.layers!r}: layer {max(layers)} asked for, the model has {n_layers} "
                             f"decoder layers (0-{n_layers - 1})")


def prepare_for_lora(model, cfg: RunConfig, task: str, checkpointing: bool):
    from peft import prepare_model_for_kbit_training

    if cfg.method.finetuning_type == "qlora":
        return prepare_model_for_kbit_training(model, use_gradient_checkpointing=checkpointing)
    if task == "CAUSAL_LM":  # a reward model stays fp32: its fully trained score head would otherwise be bf16
        model.to(frozen_dtype(cfg))
    return model


def wrap_lora(model, peft_cfg):
    from peft import get_peft_model

    try:
        # autocast_adapter_dtype keeps the LoRA weights in fp32 over a bf16 base: optimizer updates stay exact
        return get_peft_model(model, peft_cfg, autocast_adapter_dtype=True)
    except ValueError as exc:
        raise ModelLoadError(f"lora.target_modules={peft_cfg.target_modules!r}: {exc}") from None


def apply_freeze(model, cfg: RunConfig, extra: tuple = ()) -> None:
    fc = cfg.freeze
    n_layers = model.config.get_text_config().num_hidden_layers
    k = fc.trainable_layers
    layer_ids = set(range(max(0, n_layers - k), n_layers)) if k >= 0 else set(range(min(n_layers, -k)))
    wanted = [m.strip() for m in fc.trainable_modules.split(",") if m.strip() and m.strip() != "all"]
    extra = [m.strip() for m in fc.extra_modules.split(",") if m.strip()] + list(extra)
    layer_re = re.compile(r"\.layers\.(\d+)\.")
    chosen = 0
    for name, param in model.named_parameters():
        m = layer_re.search(name)
        in_layer = m is not None and int(m.group(1)) in layer_ids and (not wanted or any(w in name for w in wanted))
        param.requires_grad = in_layer or any(e in name for e in extra)
        chosen += param.requires_grad
    if not chosen:
        raise ModelLoadError(f"freeze: no parameter matches trainable_layers={k}, trainable_modules={fc.trainable_modules!r}, "
                             f"extra_modules={fc.extra_modules!r} (the model has {n_layers} layers)")


def want_checkpointing(cfg: RunConfig) -> bool:
    """'auto': only on a GPU with long rows, where activations rather than compute are the limit."""
    import torch

    choice = cfg.training.gradient_checkpointing
    if choice != "auto":
        return choice == "on"
    return torch.cuda.is_available() and cfg.training.cutoff_len * cfg.training.per_device_train_batch_size > 32768


# ----------------------------------------------------------------------------------------------------------------------------
# Trainer


def hyperparameters(cfg: RunConfig) -> dict:
    """The optimisation settings of ``training.*``, named as TrainingArguments names them: read here and nowhere else."""
    t = cfg.training
    return dict(learning_rate=t.learning_rate, num_train_epochs=t.num_train_epochs, max_steps=t.max_steps,
                lr_scheduler_type=t.lr_scheduler_type, warmup_steps=t.warmup_steps, weight_decay=t.weight_decay,
                max_grad_norm=t.max_grad_norm if t.max_grad_norm > 0 else None, seed=t.seed, data_seed=t.seed,
                logging_steps=t.logging_steps, save_total_limit=t.save_total_limit)


def trainer_args(cfg: RunConfig, run_dir: Path, has_eval: bool) -> dict:
    """The TrainingArguments every method shares (SFTConfig, DPOConfig, KTOConfig, RewardConfig, GRPOConfig, RLOOConfig
    all take them); a method adds or overrides only what is its own."""
    import torch

    t, precision = cfg.training, cfg.distributed.mixed_precision
    on_gpu = torch.cuda.is_available()
    eval_strategy = ("steps" if t.eval_steps else "epoch") if has_eval else "no"
    if has_eval:  # the best checkpoint needs a save at every evaluation
        save_strategy, save_steps = eval_strategy, t.eval_steps or 500
    else:
        save_strategy, save_steps = ("steps", t.save_steps) if t.save_steps else ("no", 500)
    return dict(
        **hyperparameters(cfg), output_dir=str(run_dir / rundir.CHECKPOINTS),
        per_device_train_batch_size=t.per_device_train_batch_size, per_device_eval_batch_size=t.per_device_train_batch_size,
        gradient_accumulation_steps=t.gradient_accumulation_steps, logging_first_step=True, save_strategy=save_strategy,
        save_steps=save_steps, eval_strategy=eval_strategy, eval_steps=t.eval_steps or None,
        load_best_model_at_end=has_eval, metric_for_best_model="eval_loss" if has_eval else None, greater_is_better=False,
        activation_checkpointing=want_checkpointing(cfg) and cfg.method.finetuning_type != "qlora",
        bf16=precision == "bf16" or precision == "auto" and on_gpu and bf16_capable()
        and cfg.method.finetuning_type in ("full", "freeze") and cfg.model.dtype != "float32", fp16=precision == "fp16",
        use_cpu=not on_gpu, report_to=report_to(cfg), project="tuning-studio", run_name=run_dir.name,
        dataloader_num_workers=0, disable_tqdm=False, save_only_model=False,
        use_liger_kernel=on_gpu and importlib.util.find_spec("liger_kernel") is not None,
    )


def report_to(cfg: RunConfig) -> list[str]:
    """``training.report_to`` as the trainers take it ([] = only the run folder's metrics.jsonl)."""
    return [] if cfg.training.report_to == "none" else cfg.training.report_to.split(",")


def reporting_env(cfg: RunConfig, run_dir: Path) -> dict[str, str]:
    """Where TensorBoard event files and trackio's database go: inside the run folder, unless the user's environment
    already names a place. (Both libraries read these variables; trackio reads TRACKIO_DIR when it is imported.)"""
    chosen = report_to(cfg)
    env = {}
    if "tensorboard" in chosen:
        env["TENSORBOARD_LOGGING_DIR"] = str(run_dir / rundir.TENSORBOARD)
    if "trackio" in chosen:
        env["TRACKIO_DIR"] = str(run_dir / rundir.TRACKIO)
    return env


def optimizer(cfg: RunConfig, params, num_training_steps: int):
    """AdamW and its schedule from the same hyper-parameters, for a loop of the studio's own (PPO)."""
    import torch
    from transformers import get_scheduler

    hp = hyperparameters(cfg)
    opt = torch.optim.AdamW(params, lr=hp["learning_rate"], weight_decay=hp["weight_decay"])
    return opt, get_scheduler(hp["lr_scheduler_type"], opt, num_warmup_steps=hp["warmup_steps"],
                              num_training_steps=num_training_steps)


def use_fast_paths(trainer, cfg: RunConfig, log=print) -> None:
    """The studio's exact faster paths (engine/train/fast_paths.py) on a built TRL trainer, as the config asks."""
    import torch

    from studio.engine.train import fast_paths

    used = []
    if cfg.training.row_attention and cfg.training.batching == "padding_free" and cfg.method.stage in ("sft", "pt"):
        # measured on CPU only (fast_paths._RowAttention also checks the device of each call)
        math_backward = cfg.training.row_attention_backward == "matmul" and not torch.cuda.is_available()
        fast_paths.use_packed_attention(trainer.model, math_backward=math_backward)
        used.append("per-row attention" + (" (short rows' backward as matmuls)" if math_backward else ""))

    # on CUDA, TRL's own head already scores only trained positions, with Triton kernels: keep it there
    if cfg.training.labeled_lm_head and cfg.method.stage in ("sft", "pt", "dpo", "kto") and not torch.cuda.is_available():
        ok = fast_paths.use_labeled_lm_head(trainer.model, trainer_head_outputs(cfg))
        if getattr(trainer, "ref_model", None) is not None:
            fast_paths.use_labeled_lm_head(trainer.ref_model, ("log_probs",))
        used += ["labeled LM head"] if ok else []
    # measured on CPU only; on CUDA the trainer's own mixed precision is the place for this
    if cfg.training.bf16_adapters and not torch.cuda.is_available() and fast_paths.use_bf16_adapters(trainer.model):
        used.append("bf16 adapters")
    if used:
        log(f"speed: {', '.join(used)}")


def trainer_head_outputs(cfg: RunConfig) -> tuple[str, ...]:
    """The per-token outputs TRL's trainers read from the LM head (their metrics), per stage."""
    if cfg.method.stage == "kto":
        return ("log_probs", "entropy", "mean_logits")
    if cfg.method.stage == "dpo":
        return ("log_probs", "entropy", "mean_logits", "is_top1", "log_sum_sq_probs")
    return ("log_probs", "entropy", "is_top1")


def start(cfg: RunConfig):
    """Threads and seed for this process, then the tokenizer (with the configured chat template): every method's first step."""
    import torch

    if cfg.training.num_threads:
        torch.set_num_threads(cfg.training.num_threads)
    torch.manual_seed(cfg.training.seed)
    return load_tokenizer(cfg.model.name_or_path, cfg.model.chat_template, cfg.model.trust_remote_code)


def write_data_report(run_dir: Path, report: dict) -> None:
    if int(os.environ.get("RANK", "0")) != 0:  # under accelerate only rank 0 writes the run folder
        return
    (run_dir / rundir.DATA_REPORT).write_text(json.dumps(report, indent=2, ensure_ascii=False), encoding="utf-8")


def fit(trainer, run_dir: Path, resume: bool, eval_first: bool = True, log=print):
    """``trainer.train()``, from the run's latest complete checkpoint when resuming. With an eval split, a new run is
    evaluated once before the first step (logged at step 0), so the eval curve starts from the base model."""
    checkpoint = latest_checkpoint(run_dir, log) if resume else None
    if resume and checkpoint is None:
        raise FileNotFoundError(f"{run_dir / rundir.CHECKPOINTS}: no complete checkpoint to resume from")
    if checkpoint is not None:
        log(f"resuming from {checkpoint}")
    if eval_first and not resume and trainer.eval_dataset is not None:
        with _same_random_state():  # the baseline must not change what training draws (batch order, dropout)
            trainer.evaluate()
    return trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)


@contextlib.contextmanager
def _same_random_state():
    import random

    import numpy as np
    import torch

    saved = random.getstate(), np.random.get_state(), torch.random.get_rng_state()
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
    try:
        yield
    finally:
        random.setstate(saved[0])
        np.random.set_state(saved[1])
        torch.random.set_rng_state(saved[2])
        if cuda is not None:
            torch.cuda.set_rng_state_all(cuda)


def save_final(trainer, tokenizer, cfg: RunConfig, run_dir: Path) -> Path:
    """The adapter (lora/qlora) or the whole model (freeze/full), with the tokenizer and its chat template."""
    out = run_dir / (rundir.ADAPTER if cfg.method.finetuning_type in ("lora", "qlora") else rundir.MODEL)
    trainer.save_model(str(out))  # main process only under DDP; an adapter for PEFT models
    if trainer.is_world_process_zero():
        tokenizer.save_pretrained(out)
    return out


# what a checkpoint folder holds once Trainer._save_checkpoint is done with it: the weights (one of these), the optimizer
# and, written last, trainer_state.json (transformers 5: save_model, optimizer/scheduler, RNG state, then the state file)
WEIGHT_FILES = ("adapter_model.safetensors", "adapter_model.bin", "model.safetensors", "model.safetensors.index.json",
                "pytorch_model.bin", "pytorch_model.bin.index.json")
OPTIMIZER_FILES = ("optimizer.pt", "optimizer.bin")
TRAINER_STATE = "trainer_state.json"


def checkpoint_problem(folder: Path) -> str | None:
    """Why ``folder`` cannot be resumed from, or None when it is complete. A save cut short (the trainer killed, the disk
    full) leaves a folder without a readable trainer_state.json; a folder half deleted by checkpoint rotation may keep
    the state file but lack the weights or the optimizer."""
    state = Path(folder) / TRAINER_STATE
    if not state.is_file():
        return f"no {TRAINER_STATE}: its save was cut short"
    try:
        json.loads(state.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return f"{TRAINER_STATE} is unreadable ({type(exc).__name__}): its save was cut short"
    if not any((Path(folder) / name).is_file() for name in WEIGHT_FILES):
        return "no model weights"
    if not any((Path(folder) / name).is_file() for name in OPTIMIZER_FILES):
        return "no optimizer state"
    return None


def checkpoint_step(folder: Path) -> int | None:
    tail = Path(folder).name.rpartition("-")[2]
    return int(tail) if Path(folder).name.startswith("checkpoint-") and tail.isdigit() else None


def latest_checkpoint(run_dir: Path, log=print) -> Path | None:
    """The newest complete ``checkpoints/checkpoint-<step>``; each newer, incomplete one is named in the log and left
    as it is (nothing is deleted: a user may still want to look at it)."""
    root = Path(run_dir) / rundir.CHECKPOINTS
    found = [p for p in root.glob("checkpoint-*") if p.is_dir() and checkpoint_step(p) is not None]
    for folder in sorted(found, key=checkpoint_step, reverse=True):
        problem = checkpoint_problem(folder)
        if problem is None:
            return folder
        log(f"resume: skipping {folder} (incomplete: {problem})")
    return None
