"""Know before you train: will this run fit in memory, and how long will it take? (``studio train CONFIG --plan``)

1. **Parameters**: the model is built on PyTorch's meta device (no weights read) with the run's LoRA / freeze settings
   applied by the same code training uses, so trainable and total counts are exact.
2. **Memory** (``memory_parts``): weights at their dtype (frozen LoRA base in bf16 where the CPU/GPU has bf16 matmuls,
   4/8-bit for QLoRA), adapters, AdamW states (two fp32 values per trainable parameter), gradients, the activations and
   LM-head logits of the largest batch the run's own trainer will draw (``drawn_batches``: its sampler and collator,
   no model; ``batch x cutoff`` at most; less with gradient checkpointing), plus the Python/torch/transformers runtime
   measured in this process. The per-token constants were read off measured runs (one LoRA SFT run of the default
   model for the layers, the tiny test model for the logits; see ``ACT_PER_TOKEN_LAYER_HIDDEN``).
3. **Data** after the chat template: rows, tokens, trained tokens, rows the cutoff truncates, optimizer steps.
4. **Time**: a 3-step micro-run (``studio train`` itself, in a child process, in a temporary folder, on a sample of the
   rows when the data is large) is timed: start-up, seconds per step (steps 2-3) or tokens/s, what follows the last step.
   ETA = start-up + steps x step time (SFT/pt: trained tokens / tokens per second) + evaluations + the end.
5. **Calibration** (``Estimate``): the micro-run's memory at its first step and its peak RSS (and GPU memory) replace
   the analytic figures; what is left to extrapolate is the bytes per token of its largest batch to the run's largest.
6. **What to change** when it does not fit (or to see the trade-off): half the batch, gradient checkpointing, QLoRA,
   half the cutoff, each with its own peak estimate.

The last stdout line of ``--plan`` is one JSON object (``peak_memory_bytes``, ``eta_seconds``, ``train_tokens``,
``steps``, ``fits``, ...). A run that would not fit is not micro-run. ``benchmarks/plan_accuracy.py`` compares the
plan with the runs themselves.
"""

from __future__ import annotations

import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

from studio import config as C
from studio.engine import memory, rundir

# Read off peak RSS of measured runs on this CPU (LoRA SFT, batch 8, 3 steps): the tiny test model (vocabulary 49,152,
# width 32: the logits alone) gave ~20 bytes per token per vocabulary entry; the default model (30 layers, width 576,
# bf16 frozen base: 2.68 GB peak at 721 tokens, 0.88 GB before the first step) the rest. The micro-run replaces both
# with what it measures; they matter for runs that are not micro-run and for the what-to-change estimates.
ACT_PER_TOKEN_LAYER_HIDDEN = 87.0  # bf16 bytes held per token, per decoder layer, per unit of hidden size (fp32: 2x)
LOGIT_BYTES = 20.0  # bytes per token per vocabulary entry at the LM head (fp32 logits, log-softmax, gradient, metrics)
CHECKPOINTED = 0.2  # with gradient checkpointing, the share of layer activations still held
MICRO_STEPS = 3
SAMPLE_ROWS = 4096  # data larger than this is micro-run on a sample (its preparation time is added separately)


def make_plan(cfg: C.RunConfig, micro: bool = True, log=print) -> dict:
    """The whole plan as plain data (see the module docstring)."""
    started = time.time()
    import accelerate  # noqa: F401  (the libraries a run holds: their memory is measured below, before any model)
    import datasets  # noqa: F401
    import peft  # noqa: F401
    import torch  # noqa: F401
    import transformers  # noqa: F401
    import trl  # noqa: F401

    runtime = memory.rss_bytes()
    log("plan: counting parameters (meta device)")
    shape = model_shape(cfg)
    log("plan: preparing the data as training will")
    data = data_summary(cfg)
    parts = memory_parts(cfg, shape, data["batch_tokens"], runtime)
    avail = available_memory()
    out = {"stage": cfg.method.stage, "finetuning_type": cfg.method.finetuning_type, "parameters": shape,
           "memory": {"parts": parts, "total_bytes": sum(parts.values()), "available": avail}, "data": data,
           "micro_run": None}
    static = sum(parts.values()) - parts["activations"]
    on_gpu = "gpu_total_bytes" in avail
    # on a GPU the weights pass through RAM while loading, and everything else lives on the GPU
    ram = Estimate(cfg, shape, data["batch_tokens"], runtime + parts["weights"] if on_gpu else static, not on_gpu)
    gpu = Estimate(cfg, shape, data["batch_tokens"], static - runtime) if on_gpu else None
    if micro and ram.peak <= avail["limit_bytes"] and (gpu is None or gpu.peak <= avail["gpu_free_bytes"]):
        log(f"plan: {MICRO_STEPS}-step micro-run (studio train in a child process)")
        run = out["micro_run"] = micro_run(cfg, data)
        if run.get("ok"):
            # training's own peak scales with the batch; what runs after it (the self-cognition probe) does not
            ram.calibrate(run.get("rss_at_start"), run.get("train_peak_rss_bytes") or run["peak_rss_bytes"],
                          run.get("batch_tokens"))
            ram.floor = run["peak_rss_bytes"]
            if gpu is not None and run.get("gpu_peak_bytes"):
                gpu.calibrate(run.get("gpu_at_start"), run["gpu_peak_bytes"], run.get("batch_tokens"))
            data.update({k: v for k, v in run.get("data", {}).items() if data.get(k) is None})
            data["steps"] = data["steps"] or steps_of(cfg, data.get("rows"))  # self-cognition: rows known only now
    fits = ram.peak <= avail["limit_bytes"] and (gpu is None or gpu.peak <= avail["gpu_free_bytes"])
    out.update(peak_memory_bytes=int(ram.peak), fits=bool(fits), peak_source="micro-run" if ram.measured else "estimate",
               train_tokens=data.get("train_tokens"), steps=data["steps"], eta_seconds=eta(cfg, data, out["micro_run"]))
    if gpu is not None:
        out["gpu_peak_bytes"] = int(gpu.peak)
    binding, limit = (gpu, avail["gpu_free_bytes"]) if gpu is not None else (ram, avail["limit_bytes"])
    out["changes"] = alternatives(cfg, binding, data, 0 if gpu is not None else runtime, limit)
    out["plan_seconds"] = round(time.time() - started, 1)
    return out


class Estimate:
    """The peak of one memory (RAM, or a GPU's) = what the run holds before its first step (``static``) + bytes per
    token of its largest batch. Analytic at first; ``calibrate`` replaces both with what the micro-run measured (memory
    at the first step, the peak, the tokens of its largest batch), so the only extrapolation left is to this data's
    largest batch."""

    def __init__(self, cfg: C.RunConfig, shape: dict, tokens: int, static: float, holds_activations: bool = True):
        self.cfg, self.shape, self.tokens, self.static = cfg, shape, tokens, static
        self.per_token = activation_bytes(cfg, shape, 1_000_000) / 1_000_000 if holds_activations else 0.0
        self.measured = False
        self.floor = 0.0  # the micro-run's whole peak: memory held after training (the probe) whatever the batch

    @property
    def peak(self) -> float:
        return max(self.static + self.per_token * self.tokens, self.floor)

    def calibrate(self, start: int | None, peak: int, tokens: int | None) -> None:
        self.measured = True
        # SFT/pt count batch tokens as this plan does (padding-free rows); other trainers count their own way
        if self.cfg.method.stage in ("sft", "pt") and start and tokens and peak > start:
            self.static, self.per_token = start, (peak - start) / tokens
            self.tokens = max(self.tokens, tokens)
        elif start and peak > start and self.tokens:  # the measured peak as it is; what a change scales is its growth
            self.static, self.per_token = start, (peak - start) / self.tokens
        else:
            self.static, self.per_token, self.tokens = peak, 0.0, 0


# -- parameters -------------------------------------------------------------------------------------------------------


def model_shape(cfg: C.RunConfig) -> dict:
    """Total / trainable parameters and the sizes the memory model needs, from a meta-device model."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSequenceClassification

    from studio.engine.models import resolve_model
    from studio.engine.train import common

    config = AutoConfig.from_pretrained(resolve_model(cfg.model.name_or_path), trust_remote_code=cfg.model.trust_remote_code)
    seq_cls = cfg.method.stage == "rm"
    if seq_cls:
        config.num_labels = 1
    kind = cfg.method.finetuning_type
    with torch.device("meta"):
        cls = AutoModelForSequenceClassification if seq_cls else AutoModelForCausalLM
        model = cls.from_config(config, trust_remote_code=cfg.model.trust_remote_code)
        quantizable = sum(m.weight.numel() for n, m in model.named_modules()
                          if isinstance(m, torch.nn.Linear) and ".layers." in f".{n}")
        if kind in ("lora", "qlora"):
            model = common.wrap_lora(model, common.lora_config(cfg, "SEQ_CLS" if seq_cls else "CAUSAL_LM"))
        elif kind == "freeze":
            common.apply_freeze(model, cfg, extra=("score",) if seq_cls else ())
    params = {id(p): p for p in model.parameters()}.values()  # tied embeddings counted once
    text = config.get_text_config()
    return {"total": sum(p.numel() for p in params), "trainable": sum(p.numel() for p in params if p.requires_grad),
            "quantizable": quantizable, "layers": text.num_hidden_layers, "hidden": text.hidden_size,
            "vocab": 1 if seq_cls else text.vocab_size}


# -- memory -----------------------------------------------------------------------------------------------------------


def weight_bytes_per_param(cfg: C.RunConfig) -> float:
    """Bytes per frozen parameter (QLoRA: see ``memory_parts``)."""
    from studio.engine.train import common

    kind = cfg.method.finetuning_type
    if kind == "lora":
        rl_cpu = cfg.method.stage in C.RL_STAGES and cfg.training.frozen_dtype == "auto" and not _cuda()
        return 4.0 if rl_cpu else (2.0 if str(common.frozen_dtype(cfg)).endswith("bfloat16") else 4.0)
    if kind in ("full", "freeze"):
        return 2.0 if cfg.model.dtype in ("bfloat16", "float16") or (cfg.model.dtype == "auto" and _cuda()
                                                                     and common.bf16_capable()) else 4.0
    return 4.0


def memory_parts(cfg: C.RunConfig, shape: dict, batch_tokens: int, runtime: int) -> dict:
    """Bytes per part of a run's peak (see the module docstring)."""
    kind, trainable, total = cfg.method.finetuning_type, shape["trainable"], shape["total"]
    frozen = total - trainable if kind in ("lora", "qlora") else total
    if kind == "qlora":  # 4-bit: half a byte + block constants (~0.03 B with double quantization); 8-bit: one byte
        per_q = 0.53 if cfg.quantization.bits == 4 else 1.06
        weights = shape["quantizable"] * per_q + (frozen - shape["quantizable"]) * 4.0
    else:
        weights = frozen * weight_bytes_per_param(cfg)
    parts = {"runtime": runtime, "weights": int(weights),
             "adapters": int(trainable * 4) if kind in ("lora", "qlora") else 0,
             "gradients": int(trainable * 4), "optimizer": int(trainable * 8),
             "activations": activation_bytes(cfg, shape, batch_tokens)}
    if cfg.method.stage in ("dpo", "kto") and kind in ("full", "freeze"):  # a frozen copy of the base as reference
        parts["reference_model"] = int(total * weight_bytes_per_param(cfg))
    return parts


def activation_bytes(cfg: C.RunConfig, shape: dict, batch_tokens: int) -> int:
    """What the forward pass keeps for backward for ``batch_tokens`` tokens, and the LM head's logits."""
    act_bytes = 2.0 if weight_bytes_per_param(cfg) == 2.0 else 4.0
    layers = batch_tokens * shape["layers"] * shape["hidden"] * ACT_PER_TOKEN_LAYER_HIDDEN * act_bytes / 2.0
    if checkpointing(cfg):
        layers *= CHECKPOINTED
    return int(layers + batch_tokens * shape["vocab"] * LOGIT_BYTES)


def checkpointing(cfg: C.RunConfig) -> bool:
    choice = cfg.training.gradient_checkpointing
    if choice != "auto":
        return choice == "on"
    return _cuda() and cfg.training.cutoff_len * cfg.training.per_device_train_batch_size > 32768


def available_memory() -> dict:
    """This machine's RAM (and GPU): the limit a run is compared with is what is available now."""
    ram = memory.ram()
    out = {"ram_total_bytes": ram["total_bytes"], "ram_available_bytes": ram["available_bytes"],
           "limit_bytes": ram["available_bytes"], "where": "RAM"}
    gpu = memory.gpu()
    if gpu is not None:
        out.update(gpu_name=gpu["name"], gpu_total_bytes=gpu["total_bytes"], gpu_free_bytes=gpu["free_bytes"])
    return out


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


# -- data -------------------------------------------------------------------------------------------------------------


def data_summary(cfg: C.RunConfig) -> dict:
    """Rows, tokens, truncated rows, steps and the largest batch, as training will prepare the data."""
    from studio.engine.train import common

    t = cfg.training
    out = {"rows": None, "eval_rows": None, "train_tokens": None, "trained_tokens": None, "truncated_rows": None,
           "lengths": [], "prepare_seconds": None}
    start = time.time()
    if cfg.method.stage in ("sft", "pt") and not cfg.identity.name_en.strip():
        from studio.engine.data.load import prepare_pt_data, prepare_sft_data

        tok = common.start(cfg)
        prepare = prepare_pt_data if cfg.method.stage == "pt" else prepare_sft_data
        data = prepare(cfg.data, tok, t.cutoff_len, t.seed)
        rep = data.report
        out.update(rows=rep["train_rows"], eval_rows=rep["eval_rows"], train_tokens=rep["train_tokens"],
                   trained_tokens=rep["trained_tokens"], truncated_rows=rep["truncated_rows"],
                   lengths=sorted(len(e["input_ids"]) for e in data.train))
        out["drawn_batch_tokens"] = drawn_batches(cfg, tok, data, steps_of(cfg, rep["train_rows"]))
    elif cfg.method.stage in C.PREFERENCE_STAGES:
        out.update(_preference_summary(cfg))
    elif cfg.method.stage in C.RL_STAGES:
        from studio.engine.data.prompts import load_prompts

        prompts, _ = load_prompts(cfg.data)
        out["rows"] = len(prompts)
    out["prepare_seconds"] = round(time.time() - start, 2)
    out["steps"] = steps_of(cfg, out["rows"])
    out["batch_tokens"] = out.pop("drawn_batch_tokens", None) or largest_batch(cfg, out["lengths"])
    out["lengths"] = len(out["lengths"])  # the count only: the lengths stay in this process
    return out


def _preference_summary(cfg: C.RunConfig) -> dict:
    """Pairs (or labelled answers) rendered through the chat template: both sides of a pair go through the model."""
    from studio.engine.data.load import DataError, render_example
    from studio.engine.data.preference import prepare_preference_data
    from studio.engine.train import common

    tok = common.start(cfg)
    kind = "kto" if cfg.method.stage == "kto" else "preference"
    data = prepare_preference_data(cfg.data, kind, cfg.training.seed)
    lengths, trained, truncated = [], 0, 0
    for rec in data.train:
        total = 0
        for side in ("chosen", "rejected") if kind == "preference" else ("completion",):
            try:
                r = render_example(tok, rec["prompt"] + list(rec[side]), cfg.training.cutoff_len)
            except DataError:
                continue
            total += r.num_tokens
            trained += r.num_trained
            truncated += r.truncated
        lengths.append(total * (2 if kind == "kto" else 1))  # KTO also runs a mismatched (KL) batch
    return {"rows": len(data.train), "eval_rows": len(data.eval), "train_tokens": sum(lengths), "trained_tokens": trained,
            "truncated_rows": truncated, "lengths": sorted(lengths)}


def steps_of(cfg: C.RunConfig, rows: int | None) -> int | None:
    """Optimizer steps, as the trainers count them (max_steps wins; else epochs x batches per epoch)."""
    t = cfg.training
    if t.max_steps > 0:
        return t.max_steps
    if not rows:
        return None
    if cfg.method.stage in C.RL_STAGES:
        per_epoch = math.ceil(rows / cfg.rl.rollout_batch_size)
    else:
        per_epoch = max(1, math.ceil(math.ceil(rows / t.per_device_train_batch_size) / t.gradient_accumulation_steps))
    return max(1, math.ceil(per_epoch * t.num_train_epochs))


def drawn_batches(cfg: C.RunConfig, tokenizer, data, steps: int | None, limit: int = 20_000) -> int | None:
    """Tokens of the largest batch the run's own trainer will draw (every batch of the run, up to ``limit``: the same
    sampler and collator as training, see ``first_batch.trainer_batches``); None when there are too many to list."""
    from studio.engine.train.first_batch import trainer_batches

    count = (steps or 0) * cfg.training.gradient_accumulation_steps
    if not count or count > limit:
        return None
    sizes = [int(b["input_ids"].numel() if "attention_mask" not in b else b["attention_mask"].numel())
             for b in trainer_batches(cfg, tokenizer, data, count)]
    return max(sizes) if sizes else None


def largest_batch(cfg: C.RunConfig, lengths: list[int]) -> int:
    """Tokens of the largest batch this data can make: the B longest rows (padding-free) or B x the longest (padded);
    without lengths (self-cognition, RL), batch x cutoff (RL: every sampled answer of a step)."""
    t = cfg.training
    if cfg.method.stage in C.RL_STAGES:
        per_step = cfg.rl.rollout_batch_size * (cfg.rl.num_generations if cfg.method.stage != "ppo" else 1)
        return per_step * min(t.cutoff_len, 256 + cfg.rl.max_new_tokens)
    if not lengths:
        return t.per_device_train_batch_size * t.cutoff_len
    longest = lengths[-t.per_device_train_batch_size:]
    return sum(longest) if t.batching == "padding_free" else len(longest) * longest[-1]


# -- the micro-run ----------------------------------------------------------------------------------------------------


def micro_run(cfg: C.RunConfig, data: dict) -> dict:
    """``python -m studio.train`` for MICRO_STEPS steps in a temporary folder; its timings, peak RSS and data report."""
    t = cfg.training
    sets = {"training.max_steps": MICRO_STEPS, "training.logging_steps": 1, "training.save_steps": 0,
            "training.report_to": "none", "output.runs_dir": "", "output.run_name": "plan"}
    sampled = bool(data.get("rows") and data["rows"] > SAMPLE_ROWS)
    if sampled:  # enough rows for the steps, a few times over, so batch lengths vary as in the real run
        sets["data.max_samples"] = max(512, 4 * MICRO_STEPS * t.per_device_train_batch_size * t.gradient_accumulation_steps)
    micro = C.apply_overrides(C.from_dict(cfg.to_dict()), sets)
    with tempfile.TemporaryDirectory(prefix="studio-plan-") as tmp:
        C.save(micro, Path(tmp) / "config.yaml")
        run_dir = Path(tmp) / "run"
        argv = [sys.executable, "-m", "studio.train", str(Path(tmp) / "config.yaml"), f"--output-dir={run_dir}"]
        import subprocess

        launched = time.time()
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _, status, usage = os.wait4(proc.pid, 0)  # this child's own rusage: its peak RSS
        proc.returncode = os.waitstatus_to_exitcode(status)
        ended = time.time()
        return _measure(run_dir, launched, ended, usage, proc.returncode, sampled)


def _measure(run_dir: Path, launched: float, ended: float, usage, code: int, sampled: bool) -> dict:
    st = rundir.read_status(run_dir)
    out = {"ok": code == 0 and st.get("state") == "finished", "wall_seconds": round(ended - launched, 2),
           "peak_rss_bytes": int(usage.ru_maxrss) * 1024, "rss_at_start": st.get("rss_at_start"),
           "train_peak_rss_bytes": st.get("train_peak_rss_bytes"),
           "gpu_at_start": st.get("gpu_at_start"), "sampled": sampled, "steps": MICRO_STEPS}
    if not out["ok"]:
        out["error"] = (st.get("error") or f"exit code {code}").splitlines()[-1][:500]
        return out
    lines = rundir.read_metrics(run_dir)
    steps = {m["step"]: m for m in lines if m.get("kind") == "train"}
    evals = [m for m in lines if m.get("kind") == "eval"]
    first, last = steps.get(1), steps.get(MICRO_STEPS)
    if not first or not last:
        out.update(ok=False, error="the micro-run logged no step times")
        return out
    span = max(1e-6, last["time"] - first["time"])
    step_s = span / (MICRO_STEPS - 1)
    out.update(step_seconds=round(step_s, 3), startup_seconds=round(first["time"] - launched - step_s, 2),
               end_seconds=round(ended - last["time"], 2),
               eval_seconds=round(evals[0].get("eval_runtime", 0.0), 3) if evals else 0.0,
               gpu_peak_bytes=max((m.get("gpu_peak_bytes", 0) for m in lines), default=0) or None)
    if first.get("num_tokens") is not None and last.get("num_tokens") is not None:
        out["tokens_per_s"] = round((last["num_tokens"] - first["num_tokens"]) / span, 1)
        per_step = [b.get("num_tokens", 0) - a.get("num_tokens", 0) for a, b in zip([{}] + list(steps.values()),
                                                                                       steps.values())]
        out["batch_tokens"] = int(max(per_step) / max(1, cfg_accum(run_dir)))  # per micro-batch (what one forward holds)
    else:
        out["batch_tokens"] = 0
    report = run_dir / rundir.DATA_REPORT
    if report.is_file() and not sampled:
        rep = json.loads(report.read_text(encoding="utf-8"))
        out["data"] = {k: rep.get(k) for k in ("train_tokens", "trained_tokens", "truncated_rows") if k in rep}
        out["data"]["rows"] = rep.get("train_rows")
        out["data"]["eval_rows"] = rep.get("eval_rows")
    return out


def cfg_accum(run_dir: Path) -> int:
    try:
        return C.load(run_dir / rundir.CONFIG).training.gradient_accumulation_steps
    except C.ConfigError:
        return 1


# -- time -------------------------------------------------------------------------------------------------------------


def eta(cfg: C.RunConfig, data: dict, run: dict | None) -> float | None:
    """Seconds for the whole run from the micro-run's measurements (None without one)."""
    if not run or not run.get("ok") or not data.get("steps"):
        return None
    steps, t = data["steps"], cfg.training
    if cfg.method.stage in ("sft", "pt") and run.get("tokens_per_s") and data.get("train_tokens") and data.get("rows"):
        per_epoch = max(1, math.ceil(math.ceil(data["rows"] / t.per_device_train_batch_size) / t.gradient_accumulation_steps))
        train = steps / per_epoch * data["train_tokens"] / run["tokens_per_s"]
    else:
        train = steps * run["step_seconds"]
    evals = 0.0
    if data.get("eval_rows"):
        per_epoch = max(1, math.ceil(math.ceil((data.get("rows") or 1) / t.per_device_train_batch_size)
                                     / t.gradient_accumulation_steps))
        count = steps // t.eval_steps if t.eval_steps else math.ceil(steps / per_epoch)
        evals = max(0, count - 1) * run.get("eval_seconds", 0.0)  # the step-0 and the last one are in the micro-run
    prep = 0.0
    if run.get("sampled") and data.get("prepare_seconds"):
        prep = data["prepare_seconds"]  # the real run prepares every row; the micro-run only a sample
    return round(run["startup_seconds"] + train + evals + run["end_seconds"] + prep, 1)


# -- what to change ---------------------------------------------------------------------------------------------------


def alternatives(cfg: C.RunConfig, est: Estimate, data: dict, runtime: int, limit: float) -> list[dict]:
    """Each usual change with its peak (against ``limit``): this run's estimate ``est`` (RAM, or the GPU's on a GPU
    machine) plus the analytic difference of what the change touches (static memory; bytes per token scaled as the
    analytic model scales them; the largest batch). ``runtime``: the RAM-only part (0 for a GPU's estimate)."""
    t = cfg.training
    base_parts = memory_parts(cfg, est.shape, data["batch_tokens"], runtime)
    base_static = sum(base_parts.values()) - base_parts["activations"]
    base_per_token = activation_bytes(cfg, est.shape, 1_000_000) / 1_000_000
    changes = []
    if t.per_device_train_batch_size > 1:
        half = max(1, t.per_device_train_batch_size // 2)
        changes.append((f"training.per_device_train_batch_size={half}", {
            "training.per_device_train_batch_size": half, "training.gradient_accumulation_steps":
                t.gradient_accumulation_steps * 2}))
    if not checkpointing(cfg):
        changes.append(("training.gradient_checkpointing=on", {"training.gradient_checkpointing": "on"}))
    if cfg.method.finetuning_type in ("lora", "full") and cfg.method.stage != "rm":
        changes.append(("method.finetuning_type=qlora", {"method.finetuning_type": "qlora"}))
    if t.cutoff_len > 64:
        changes.append((f"training.cutoff_len={t.cutoff_len // 2}", {"training.cutoff_len": t.cutoff_len // 2}))
    out = []
    for label, sets in changes:
        alt = C.apply_overrides(C.from_dict(cfg.to_dict()), sets)
        shape = model_shape(alt) if "method.finetuning_type" in sets else est.shape
        tokens = est.tokens
        if "training.per_device_train_batch_size" in sets:
            tokens = max(1, tokens * alt.training.per_device_train_batch_size // t.per_device_train_batch_size)
        if "training.cutoff_len" in sets:
            tokens = min(tokens, alt.training.per_device_train_batch_size * alt.training.cutoff_len)
        parts = memory_parts(alt, shape, tokens, runtime)
        static = est.static + (sum(parts.values()) - parts["activations"]) - base_static
        per_token = est.per_token * (activation_bytes(alt, shape, 1_000_000) / 1_000_000) / base_per_token
        peak = max(static + per_token * tokens, est.floor)
        out.append({"change": label, "set": sets, "peak_memory_bytes": int(peak), "saves_bytes": int(est.peak - peak),
                    "fits": bool(peak <= limit)})
    return out
