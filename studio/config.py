"""One typed configuration tree for every run: ``RunConfig``.

Every field carries metadata (help text, bounds, choices) that the CLI validation, the YAML presets and the UI form all read,
so a knob is declared once. Precedence: dataclass defaults < preset YAML < ``--set section.key=value`` / UI overrides.

This module imports nothing heavy (no torch, no gradio): the UI builds its form from it at start-up.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from studio.configinput import (MAX_LIST, MAX_TEXT, ConfigError, NotFinite, YamlError, YamlRefused, load_yaml,  # noqa: F401
                                read_yaml_file, to_bool, to_float, to_int, to_list, to_str)
from studio.rewardspec import (REWARD_LANGUAGES, REWARD_MODEL_DIR, REWARD_RULES, RewardSpecError, find_reward_model,  # noqa: F401
                              parse_reward_rule, reward_errors)
from studio.configrules import PREFERENCE_STAGES, RL_STAGES, cross_field_errors, parse_layers  # noqa: F401

STAGES = ("sft", "pt", "rm", "dpo", "kto", "ppo", "grpo", "rloo")
FINETUNING_TYPES = ("lora", "qlora", "freeze", "full")
# what DPOConfig.loss_type accepts in trl 1.16 (reference-free SimPO/ORPO exist only in trl.experimental: CPO/ORPO trainers)
# how the processes of a run share the work (accelerate): plain data parallel, DeepSpeed ZeRO stage 2 / 3, PyTorch FSDP
DIST_BACKENDS = ("ddp", "deepspeed_zero2", "deepspeed_zero3", "fsdp")
DPO_LOSSES = ("sigmoid", "ipo", "hinge", "robust", "exo_pair", "nca_pair", "bco_pair", "sppo_hard", "aot", "aot_unpaired",
              "apo_zero", "apo_down", "discopop", "sigmoid_norm")


REPORT_TO = ("none", "tensorboard", "trackio", "tensorboard,trackio")  # where trainer logs go besides metrics.jsonl
# upper bounds of the open-ended counts: far above any run this studio makes, far below what overflows a library
MAX_STEPS = 10_000_000
MAX_COUNT = 1_000_000_000


def opt(default: Any, help: str, *, min: float | None = None, max: float | None = None, gt: float | None = None,
        choices: tuple | None = None, help_zh: str = "", advanced: bool = False) -> Any:
    """A dataclass field with the metadata the validator and the UI form read."""
    meta = {"help": help, "help_zh": help_zh, "min": min, "max": max, "gt": gt, "choices": choices, "advanced": advanced}
    if isinstance(default, list):
        return field(default_factory=lambda d=tuple(default): list(d), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class ModelSection:
    name_or_path: str = opt("default", "Model: 'default' (embedded SmolLM2-135M-Instruct), a local Hugging Face folder, or a hub id "
                            "when a hub is reachable.", help_zh="模型：'default'（内置 SmolLM2-135M-Instruct）、本地 HF 模型目录或 Hub ID")
    dtype: str = opt("auto", "Weights dtype for full/freeze training; 'auto' keeps float32 on CPU and bfloat16 on a bf16 GPU.",
                     choices=("auto", "float32", "bfloat16", "float16"), help_zh="权重精度", advanced=True)
    trust_remote_code: bool = opt(False, "Run code shipped inside the model folder. Off by default: it executes arbitrary Python.",
                                  help_zh="允许执行模型目录中的代码（有安全风险）", advanced=True)
    chat_template: str = opt("", "A Jinja chat template (text or path to a .jinja file) replacing the model's own.",
                             help_zh="替换模型自带的对话模板（文本或 .jinja 文件路径）", advanced=True)


@dataclass
class DataSection:
    datasets: list = opt([], "Datasets, one per entry: PATH[#NAME][@MAX]. PATH is a .json/.jsonl/.csv/.parquet file or a folder "
                         "with dataset_info.json (#NAME picks an entry); @MAX caps the rows taken from that dataset.",
                         help_zh="数据集，每行一个：路径[#名称][@最大条数]")
    max_samples: int = opt(0, "Cap on rows taken from each dataset (0 = all).", min=0, max=MAX_COUNT,
                           help_zh="每个数据集最多取多少条（0=全部）")
    train_on_prompt: bool = opt(False, "Also train on prompt/user tokens (default: loss only on assistant tokens).",
                                help_zh="也在提示词上计算损失（默认只在回答上）")
    val_size: float = opt(0.0, "Held-out evaluation split: a fraction (<1) or a row count (>=1); 0 = none.", min=0,
                          max=MAX_COUNT,
                          help_zh="验证集比例（<1）或条数（>=1），0 表示不划分")
    on_bad_row: str = opt("error", "A malformed row stops the run with its file and row ('error') or is skipped and counted ('skip').",
                          choices=("error", "skip"), help_zh="遇到格式错误的行：报错或跳过并计数")
    system: str = opt("", "System prompt for rows that have none (empty: the chat template's own default).",
                      help_zh="没有系统提示的样本使用的系统提示（留空则用模板默认）")


@dataclass
class MethodSection:
    stage: str = opt("sft", "Training stage: supervised fine-tuning, continued pre-training on plain text (pt: every token "
                     "trained, documents packed to cutoff_len), reward model, preference or RL methods.", choices=STAGES,
                     help_zh="训练阶段（pt：纯文本继续预训练，所有 token 参与训练，文档按 cutoff_len 拼接）")
    finetuning_type: str = opt("lora", "lora: low-rank adapters; qlora: adapters on a 4/8-bit base; freeze: train the last layers; "
                               "full: every weight.", choices=FINETUNING_TYPES, help_zh="微调方式")


@dataclass
class LoraSection:
    r: int = opt(8, "LoRA rank.", min=1, max=1024, help_zh="LoRA 秩")
    alpha: int = opt(16, "LoRA alpha (scale = alpha / r).", min=1, max=4096, help_zh="LoRA alpha")
    dropout: float = opt(0.0, "Dropout on the LoRA input.", min=0.0, max=0.9, help_zh="LoRA dropout")
    target_modules: str = opt("all-linear", "Modules to adapt: 'all-linear' or comma-separated names (q_proj,v_proj,...).",
                              help_zh="目标模块：all-linear 或逗号分隔的模块名")
    layers: str = opt("", "Decoder layers to adapt, counted from 0: empty for all, else indices and ranges such as '15-29' "
                      "or '0,2,4' (the other layers keep their weights exactly).",
                      help_zh="要加 LoRA 的解码层（从 0 计）：留空为全部，或如 '15-29'、'0,2,4'", advanced=True)
    use_rslora: bool = opt(False, "Rank-stabilised scaling (alpha / sqrt(r)).", help_zh="rsLoRA 缩放", advanced=True)
    use_dora: bool = opt(False, "Weight-decomposed LoRA (DoRA); slower.", help_zh="DoRA", advanced=True)


@dataclass
class FreezeSection:
    trainable_layers: int = opt(2, "Train the last N decoder layers (negative: the first N); the rest stay frozen.",
                                min=-1000, max=1000, help_zh="训练最后 N 层（负数为前 N 层）")
    trainable_modules: str = opt("all", "Inside those layers, train only modules whose name contains one of these (comma-separated) "
                                 "or 'all'.", help_zh="这些层中只训练名字包含这些词的模块，或 all")
    extra_modules: str = opt("", "Other modules to train as well, e.g. 'embed_tokens,lm_head'.", help_zh="额外训练的模块")


@dataclass
class QuantizationSection:
    bits: int = opt(4, "Quantization bits for QLoRA (bitsandbytes).", choices=(4, 8), help_zh="量化位数")
    quant_type: str = opt("nf4", "4-bit data type.", choices=("nf4", "fp4"), help_zh="4 位量化类型")
    double_quant: bool = opt(True, "Quantize the quantization constants too (saves memory).", help_zh="二次量化", advanced=True)
    compute_dtype: str = opt("auto", "Dtype of the de-quantized matmuls ('auto': bfloat16).",
                             choices=("auto", "float32", "bfloat16", "float16"), help_zh="计算精度", advanced=True)


@dataclass
class TrainingSection:
    learning_rate: float = opt(2e-4, "Peak learning rate.", gt=0.0, max=1.0, help_zh="学习率")
    num_train_epochs: float = opt(3.0, "Passes over the data (ignored when max_steps > 0).", gt=0.0, max=1000, help_zh="训练轮数")
    max_steps: int = opt(-1, "Stop after this many optimizer steps (-1: use epochs).", min=-1, max=MAX_STEPS,
                         help_zh="最大步数（-1 按轮数）")
    per_device_train_batch_size: int = opt(8, "Rows per step per device.", min=1, max=4096, help_zh="每设备批大小")
    gradient_accumulation_steps: int = opt(1, "Micro-batches summed before each optimizer step.", min=1, max=1024,
                                           help_zh="梯度累积步数")
    cutoff_len: int = opt(1024, "Longest tokenized row; longer rows are truncated (and counted).", min=8, max=1_000_000,
                          help_zh="最大序列长度（超出截断并计数）")
    lr_scheduler_type: str = opt("cosine", "Learning-rate schedule.", choices=("cosine", "linear", "constant", "constant_with_warmup"),
                                 help_zh="学习率调度")
    warmup_steps: int = opt(0, "Linear warm-up steps.", min=0, max=MAX_STEPS, help_zh="预热步数")
    weight_decay: float = opt(0.0, "AdamW weight decay.", min=0.0, max=1.0, help_zh="权重衰减", advanced=True)
    max_grad_norm: float = opt(1.0, "Gradient clipping norm (0: off).", min=0.0, max=1e6, help_zh="梯度裁剪", advanced=True)
    seed: int = opt(42, "Random seed (data shuffling, LoRA init).", min=0, max=2**32 - 1, help_zh="随机种子", advanced=True)
    logging_steps: int = opt(1, "Write a metrics line every N steps.", min=1, max=MAX_STEPS, help_zh="每 N 步记录一次指标")
    save_steps: int = opt(0, "Save a checkpoint every N steps (0: only at the end).", min=0, max=MAX_STEPS,
                          help_zh="每 N 步保存检查点（0 仅结束时）")
    save_total_limit: int = opt(2, "Keep at most this many checkpoints.", min=1, max=1000, help_zh="最多保留检查点数")
    eval_steps: int = opt(0, "Evaluate every N steps when val_size > 0 (0: once per epoch).", min=0, max=MAX_STEPS,
                          help_zh="每 N 步评估")
    gradient_checkpointing: str = opt("auto", "Recompute activations to save memory; 'auto' turns it on only for long rows on GPU.",
                                      choices=("auto", "on", "off"), help_zh="梯度检查点", advanced=True)
    batching: str = opt("padding_free", "padding_free: rows of a batch concatenated, no pad tokens computed; padded: classic "
                        "right-padded batches sorted by length.", choices=("padding_free", "padded"), help_zh="批处理方式",
                        advanced=True)
    frozen_dtype: str = opt("auto", "Dtype of frozen base weights under LoRA ('auto': bfloat16 where the CPU/GPU has it); "
                            "trainable weights stay float32.", choices=("auto", "float32", "bfloat16"), help_zh="冻结权重精度",
                            advanced=True)
    num_threads: int = opt(0, "CPU threads for torch (0: all physical cores).", min=0, max=1024, help_zh="CPU 线程数",
                           advanced=True)
    row_attention: bool = opt(True, "Padding-free batches: attend within each packed row with causal SDPA instead of one "
                              "block-diagonal mask over the pack (exact, less work).", help_zh="无填充批次中按行计算注意力（精确且更快）",
                              advanced=True)
    row_attention_backward: str = opt("matmul", "With row attention on a CPU: 'matmul' computes the attention backward of "
                                      "rows up to 512 tokens as plain matmuls and a softmax (faster there than SDPA's "
                                      "flash backward, which pays a fixed cost per small block); 'sdpa' keeps SDPA's own.",
                                      choices=("matmul", "sdpa"), help_zh="按行注意力的反向计算：matmul（CPU 上短行更快）或 sdpa",
                                      advanced=True)
    labeled_lm_head: bool = opt(True, "SFT/DPO/KTO: project only the positions that are trained on through the LM head, in "
                                "the weights' dtype, instead of TRL's all-position chunked head (exact up to rounding).",
                                help_zh="只对参与训练的位置计算语言模型头（SFT/DPO/KTO）", advanced=True)
    bf16_adapters: bool = opt(True, "LoRA over a bfloat16 frozen base on CPU: compute the adapters in bfloat16 under autocast "
                              "(their weights, gradients and optimizer stay float32) instead of casting every activation "
                              "to float32 and back (not exact: bfloat16 rounding).",
                              help_zh="CPU 上 bfloat16 底座的 LoRA：适配器以 bfloat16 计算（权重、梯度与优化器仍为 float32）",
                              advanced=True)
    allocator: str = opt("keep", "Memory allocator of the training process: 'keep' (glibc told to keep freed memory: "
                         "nothing mmap'd, the heap never trimmed, so tensors are not page-faulted in again every step; "
                         "measured 1.18x on long rows, same peak memory), 'system' (glibc as it comes), 'jemalloc' (needs "
                         "libjemalloc2; less peak memory, fewer tokens/s) or 'auto' (jemalloc when the system has it). "
                         "The process re-executes itself once to apply it.", choices=("keep", "system", "jemalloc", "auto"),
                         help_zh="训练进程的内存分配器：keep（glibc 保留已释放内存，默认，更快）、system、jemalloc（峰值内存更低）或 auto",
                         advanced=True)
    report_to: str = opt("none", "Also send the trainer's logs to TensorBoard (<run>/tensorboard) and/or trackio "
                         "(<run>/trackio); the run folder's metrics.jsonl is always written. Needs the library installed "
                         "(pip install tensorboard / trackio). PPO's own loop writes metrics.jsonl only.",
                         choices=REPORT_TO, help_zh="同时把训练日志写入 TensorBoard（<run>/tensorboard）和/或 trackio"
                         "（<run>/trackio）；metrics.jsonl 总会写入。需要安装相应库", advanced=True)


@dataclass
class OutputSection:
    run_name: str = opt("", "Name of the run (part of the run folder's name).", help_zh="运行名称")
    runs_dir: str = opt("", "Where run folders are made (empty: $STUDIO_HOME/runs).", help_zh="运行目录所在位置", advanced=True)


@dataclass
class IdentitySection:
    name_en: str = opt("", "Self-cognition: the model's new name in English (empty: no identity data).", help_zh="自我认知：英文名字")
    name_zh: str = opt("", "Self-cognition: the model's new name in Chinese (empty: the English name).", help_zh="自我认知：中文名字")
    author_en: str = opt("", "Self-cognition: who made it, in English.", help_zh="自我认知：英文作者/机构")
    author_zh: str = opt("", "Self-cognition: who made it, in Chinese (empty: the English author).", help_zh="自我认知：中文作者/机构")
    samples: int = opt(0, "Identity rows to train on, half per language, drawn from the shipped question/answer set "
                       "(0: all of it; more than it holds: repeated).", min=0, max=100000,
                       help_zh="使用的自我认知样本数（中英各半；0 表示全部）")
    system_prompt: str = opt("", "Default system prompt of the tuned model: empty keeps the template's own (the model learns to "
                             "answer with its new identity anyway; measured best for keeping general answers), 'auto' "
                             "writes one naming the new identity, any other text is used as is.",
                             help_zh="微调后模型的默认系统提示：留空保持模板原有；auto 自动生成含新身份的提示；或自定义文本",
                             advanced=True)
    replay_samples: int = opt(200, "General rows mixed in so the model keeps what it knew (from data.datasets, else the base "
                              "model's own answers to shipped prompts).", min=0, max=100000, help_zh="混入的通用数据条数（防遗忘）")
    probe: bool = opt(True, "After training, ask held-out identity and general questions to the base and the tuned model "
                      "(probe.json).", help_zh="训练后进行身份与保留能力探测")
    system_variety: float = opt(0.0, "Share of the identity and replay rows given a generic system prompt from a pool, so the "
                                "identity holds under a user's own system prompt.", min=0.0, max=1.0,
                                help_zh="随机配上通用系统提示的身份与回放样本比例", advanced=True)
    second_turn: float = opt(0.0, "Share of the identity rows asked as the second turn of a conversation, after a general "
                             "exchange from the replay rows.", min=0.0, max=1.0, help_zh="作为对话第二轮提问的身份样本比例",
                             advanced=True)
    distill: float = opt(0.0, "Self-distillation weight: the general rows' answers also pull the tuned model's next-token "
                         "distribution towards the base model's (KL, the adapter off is the base; LoRA/QLoRA only). "
                         "0: off.", min=0.0, max=100.0, help_zh="自蒸馏权重：通用样本上让微调模型的分布贴近原模型（KL；仅 LoRA/QLoRA）",
                         advanced=True)
    replay_ce: bool = opt(True, "With distill > 0: the general rows also get the plain next-token loss on their answers "
                          "(off: only the KL term holds them, the base's whole distribution instead of its top token).",
                          help_zh="自蒸馏时通用样本是否也计算普通的下一词损失（关闭则只用 KL 保持原模型分布）", advanced=True)
    identity_weight: float = opt(1.0, "With distill > 0: weight of the identity rows' next-token loss against the general "
                                 "rows' (1: every trained token counts the same).", min=0.0, max=100.0,
                                 help_zh="自蒸馏时身份样本下一词损失的权重（1 表示与通用样本同权）", advanced=True)
    subspace: int = opt(0, "With distill > 0: each LoRA layer reads only this many input directions, those most specific "
                        "to the identity rows against the general rows (0: off). It narrows the adapter: raise the "
                        "learning rate with it (the self_cognition preset: 128 at 3e-3).", min=0, max=4096,
                        help_zh="身份子空间：每层 LoRA 只读取最能区分身份样本与通用样本的若干输入方向（0 关闭；需同时调高学习率）",
                        advanced=True)
    probe_split: str = opt("test", "Which general questions the probe asks and reports retention on: 'test' (the test "
                           "split), 'dev' (dev only: for choosing a recipe without seeing the test split) or 'both' (asks "
                           "dev and test, reports test; slower).",
                           choices=("test", "dev", "both"),
                           help_zh="探测使用的通用问题划分：test（测试集）、dev（只问开发集，用于调参）或 both（两者都问，报告测试集，较慢）",
                           advanced=True)


@dataclass
class RlSection:
    reward_model: str = opt("", "RLHF (ppo/grpo/rloo): a trained reward model: a reward-model run folder (its reward_model/) or "
                            "the model folder itself; loaded from safetensors only.",
                            help_zh="强化学习：奖励模型（奖励模型训练的运行目录或模型目录，仅加载 safetensors）")
    reward_funcs: list = opt([], "Rule rewards added to the reward model's score, one per entry: language:zh|en (share of the "
                             "answer in that language), contains:WORD, length:N (characters).",
                             help_zh="规则奖励，每行一个：language:zh|en（回答中该语言所占比例）、contains:词、length:字符数")
    kl_coef: float = opt(0.05, "Weight of the KL penalty to the reference (the base model, adapter off); GRPO/RLOO beta.",
                         min=0.0, max=10.0, help_zh="相对参考模型的 KL 惩罚系数（GRPO/RLOO 的 beta）")
    target_kl: float = opt(0.0, "PPO: adapt kl_coef so the KL per answer tracks this target (0: fixed kl_coef).", min=0.0,
                           max=100.0, help_zh="PPO 自适应 KL 的目标值（0 表示固定系数）", advanced=True)
    rollout_batch_size: int = opt(8, "Prompts per rollout batch (one optimizer phase of PPO, one step of GRPO/RLOO).", min=1,
                                  max=4096, help_zh="每批采样的提示数")
    num_generations: int = opt(4, "GRPO/RLOO: answers sampled per prompt (the group the rewards are compared within).",
                               min=2, max=256, help_zh="GRPO/RLOO：每个提示采样的回答数")
    max_new_tokens: int = opt(48, "Longest sampled answer, in tokens.", min=1, max=32768, help_zh="采样回答的最大长度（token）")
    temperature: float = opt(1.0, "Sampling temperature of the rollouts.", gt=0.0, max=10.0, help_zh="采样温度")
    top_k: int = opt(0, "Sample only from the k most likely tokens (0: off).", min=0, max=100000, help_zh="top-k 采样（0 关闭）",
                     advanced=True)
    top_p: float = opt(1.0, "Nucleus sampling: the smallest set of tokens holding this probability (1: off).", gt=0.0, max=1.0,
                       help_zh="top-p 采样（1 关闭）", advanced=True)
    ppo_epochs: int = opt(2, "PPO (and GRPO/RLOO num_iterations): optimisation passes over each rollout batch.", min=1, max=100,
                          help_zh="每批采样数据的优化轮数")
    cliprange: float = opt(0.2, "Clip range of the policy ratio (PPO epsilon).", gt=0.0, max=10.0, help_zh="策略比率裁剪范围")
    cliprange_value: float = opt(0.2, "PPO: clip range of the value update around the rollout values.", gt=0.0, max=1000.0,
                                 help_zh="PPO 价值裁剪范围", advanced=True)
    vf_coef: float = opt(0.1, "PPO: weight of the value loss.", min=0.0, max=100.0, help_zh="PPO 价值损失权重", advanced=True)
    gamma: float = opt(1.0, "PPO: discount factor of the per-token rewards.", min=0.0, max=1.0, help_zh="PPO 折扣因子",
                       advanced=True)
    lam: float = opt(0.95, "PPO: GAE lambda (bias/variance trade-off of the advantages).", min=0.0, max=1.0,
                     help_zh="PPO GAE lambda", advanced=True)
    whiten: bool = opt(True, "PPO: normalise advantages to mean 0, std 1 in each batch.", help_zh="PPO 优势归一化", advanced=True)


@dataclass
class PreferenceSection:
    beta: float = opt(0.1, "DPO/KTO beta: how far the tuned model may move from the reference (higher: closer). For IPO it is "
                      "the regularisation tau.", gt=0.0, max=100.0, help_zh="DPO/KTO 的 beta：越大越贴近参考模型（IPO 中为 tau）")
    loss_type: str = opt("sigmoid", "DPO loss: sigmoid (DPO), ipo, hinge (SLiC), robust (noisy labels), exo_pair, nca_pair, "
                         "bco_pair, sppo_hard, aot, aot_unpaired, apo_zero, apo_down, discopop, sigmoid_norm.",
                         choices=DPO_LOSSES, help_zh="DPO 损失类型：sigmoid（标准 DPO）、ipo、hinge 等")
    label_smoothing: float = opt(0.0, "DPO robust/exo_pair: assumed probability that a preference label is flipped.",
                                 min=0.0, max=0.49, help_zh="标签平滑（robust/exo_pair：偏好标签被标反的概率）", advanced=True)
    desirable_weight: float = opt(1.0, "KTO: weight of the loss on desirable (label true) answers; raise it when they are "
                                  "rarer than undesirable ones.", gt=0.0, max=100.0, help_zh="KTO：好回答的损失权重")
    undesirable_weight: float = opt(1.0, "KTO: weight of the loss on undesirable (label false) answers.", gt=0.0, max=100.0,
                                    help_zh="KTO：坏回答的损失权重")
    center_rewards: float = opt(0.0, "Reward model: push the mean reward towards zero with this weight (0: off; 0.01 is "
                                "typical), so RLHF sees centred rewards.", min=0.0, max=10.0, help_zh="奖励模型：奖励居中系数",
                                advanced=True)


@dataclass
class DistributedSection:
    """Where a run trains and on how many processes; the checks that need the machine live in engine/jobs/distributed.py."""
    devices: str = opt("auto", "Where to train: 'auto' (the GPUs when there are, else the CPU), 'cpu', or GPU indices such "
                       "as '0,1' (one process per GPU).", help_zh="训练设备：auto（有 GPU 用 GPU，否则 CPU）、cpu 或 GPU 编号如 0,1")
    num_processes: int = opt(1, "Training processes on this machine; more than 1 starts the run under `accelerate launch` "
                             "(one per GPU, or CPU processes that share the cores).", min=1, max=1024,
                             help_zh="本机训练进程数；大于 1 时经 accelerate launch 启动")
    backend: str = opt("ddp", "How the processes share the work: ddp (each holds the whole model), deepspeed_zero2 "
                       "(optimizer state and gradients sharded), deepspeed_zero3 (weights sharded too), fsdp (PyTorch "
                       "fully sharded). DeepSpeed and FSDP need GPUs.", choices=DIST_BACKENDS,
                       help_zh="分布式后端：ddp、deepspeed_zero2、deepspeed_zero3、fsdp（后三者需要 GPU）")
    mixed_precision: str = opt("auto", "Autocast precision: 'auto' keeps the studio's measured default (bf16 only for "
                               "full/freeze on a bf16 GPU), or no / bf16 / fp16 (fp16 needs a GPU).",
                               choices=("auto", "no", "bf16", "fp16"), help_zh="混合精度：auto、no、bf16、fp16（fp16 需要 GPU）")
    num_machines: int = opt(1, "Machines taking part; start the same config on each one with its own machine_rank.", min=1,
                            max=1024, help_zh="参与训练的机器数（每台机器用同一配置、各自的 machine_rank 启动）", advanced=True)
    machine_rank: int = opt(0, "This machine's rank: 0 is the main machine (it writes the metrics and the adapter).", min=0,
                            max=1023, help_zh="本机序号：0 为主机（写入指标与适配器）", advanced=True)
    main_process_ip: str = opt("", "Address of the main machine (machine_rank 0) that every machine can reach; needed with "
                               "num_machines > 1.", help_zh="主机（machine_rank 0）的地址，多机训练时必填", advanced=True)
    main_process_port: int = opt(29500, "Port the main machine listens on for the others (0: any free port, one machine "
                                 "only).", min=0, max=65535, help_zh="主机用于汇合的端口（0：任选空闲端口，仅限单机）",
                                 advanced=True)


@dataclass
class RunConfig:
    model: ModelSection = field(default_factory=ModelSection)
    data: DataSection = field(default_factory=DataSection)
    method: MethodSection = field(default_factory=MethodSection)
    lora: LoraSection = field(default_factory=LoraSection)
    freeze: FreezeSection = field(default_factory=FreezeSection)
    quantization: QuantizationSection = field(default_factory=QuantizationSection)
    training: TrainingSection = field(default_factory=TrainingSection)
    output: OutputSection = field(default_factory=OutputSection)
    identity: IdentitySection = field(default_factory=IdentitySection)
    rl: RlSection = field(default_factory=RlSection)
    preference: PreferenceSection = field(default_factory=PreferenceSection)
    distributed: DistributedSection = field(default_factory=DistributedSection)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# ----------------------------------------------------------------------------------------------------------------------------
# Introspection used by validation, overrides and the UI form


@dataclass(frozen=True)
class FieldSpec:
    section: str
    name: str
    type: type
    default: Any
    help: str
    help_zh: str
    min: float | None
    max: float | None
    gt: float | None
    choices: tuple | None
    advanced: bool

    @property
    def key(self) -> str:
        return f"{self.section}.{self.name}"

    def describe_range(self) -> str:
        if self.choices:
            return "one of " + ", ".join(map(str, self.choices))
        low = f"> {self.gt}" if self.gt is not None else (f">= {self.min}" if self.min is not None else "")
        high = f"<= {self.max}" if self.max is not None else ""
        if self.type is list:
            return f"a list of text entries, at most {MAX_LIST}"
        if self.type is str:
            return f"text without NUL characters, at most {MAX_TEXT:,} characters"
        return " and ".join(p for p in (low, high) if p) or f"a {self.type.__name__}"


def sections() -> dict[str, type]:
    hints = typing.get_type_hints(RunConfig)
    return {f.name: hints[f.name] for f in dataclasses.fields(RunConfig)}


def field_specs() -> list[FieldSpec]:
    specs = []
    for sec_name, sec_cls in sections().items():
        hints = typing.get_type_hints(sec_cls)
        for f in dataclasses.fields(sec_cls):
            m = f.metadata
            default = f.default_factory() if f.default is dataclasses.MISSING else f.default
            specs.append(FieldSpec(sec_name, f.name, hints[f.name], default, m.get("help", ""), m.get("help_zh", ""),
                                   m.get("min"), m.get("max"), m.get("gt"), m.get("choices"), m.get("advanced", False)))
    return specs


def _spec_map() -> dict[str, FieldSpec]:
    return {s.key: s for s in field_specs()}


def _suggest(word: str, options) -> str:
    close = difflib.get_close_matches(word, list(options), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def coerce(spec: FieldSpec, value: Any) -> Any:
    """Turn a YAML/CLI/UI value into the field's type, or raise ConfigError naming the key and what it accepts."""
    try:
        return to_str(value, spec.choices) if spec.type is str else _COERCE[spec.type](value)
    except NotFinite:
        raise ConfigError(f"{spec.key}: {value!r} is not a finite number (expected {spec.describe_range()})") from None
    except (TypeError, ValueError, OverflowError):
        shown = repr(value) if len(repr(value)) <= 80 else repr(value)[:77] + "..."
        raise ConfigError(f"{spec.key}: {shown} is not a valid {spec.type.__name__} "
                          f"(expected {spec.describe_range()})") from None


_COERCE = {bool: to_bool, int: to_int, float: to_float, list: to_list}


def from_dict(data: dict | None, base: RunConfig | None = None, source: str = "config") -> RunConfig:
    """Apply a nested dict (from YAML) over ``base``; unknown sections or keys are errors with a suggestion."""
    cfg = base if base is not None else RunConfig()
    specs = _spec_map()
    for sec_name, values in (data or {}).items():
        sec_name = str(sec_name)
        if sec_name not in sections():
            raise ConfigError(f"{source}: unknown section '{sec_name}'{_suggest(sec_name, sections())}")
        if values is None:
            continue
        if not isinstance(values, dict):
            raise ConfigError(f"{source}: section '{sec_name}' must be a mapping of key: value")
        for key, value in values.items():
            key = str(key)
            spec = specs.get(f"{sec_name}.{key}")
            if spec is None:
                names = [s.name for s in specs.values() if s.section == sec_name]
                raise ConfigError(f"{source}: unknown key '{sec_name}.{key}'{_suggest(key, names)}")
            setattr(getattr(cfg, sec_name), key, coerce(spec, value))
    return cfg


def apply_overrides(cfg: RunConfig, overrides: list[str] | dict[str, Any]) -> RunConfig:
    """``["training.learning_rate=1e-4", ...]`` or ``{"training.learning_rate": 1e-4}`` applied in order."""
    items = overrides.items() if isinstance(overrides, dict) else [_split_override(o) for o in overrides]
    nested: dict[str, dict] = {}
    for key, value in items:
        key = str(key)
        if "." not in key:
            raise ConfigError(f"override '{key}': use section.key=value, e.g. training.learning_rate=1e-4")
        sec, name = key.split(".", 1)
        nested.setdefault(sec, {})[name] = value
    return from_dict(nested, cfg, source="override")


def _split_override(text: str) -> tuple[str, Any]:
    """``key=value``: the value read as YAML (numbers, lists) by the same bounded loader as config files; a text field
    keeps what was typed unless YAML reads it as text (so ``--set identity.name_en=0x10`` stays ``0x10``)."""
    if "=" not in text:
        raise ConfigError(f"override '{text}': expected section.key=value")
    key, raw = text.split("=", 1)
    key = key.strip()
    spec = _spec_map().get(key)
    if not raw.strip():
        return key, ""
    try:
        value = load_yaml(raw, f"override '{key}'")
    except YamlRefused as exc:  # an alias, a duplicate key, nesting too deep: refused, never read as plain text
        if spec is None or spec.type is not str:
            raise ConfigError(str(exc)) from None
        return key, raw
    except YamlError:  # not YAML at all: the text as typed (coerce names it when the field wants a number)
        return key, raw
    if spec is not None and spec.type is str and not isinstance(value, str):
        return key, raw
    return key, value


def validate(cfg: RunConfig, require_data: bool = True) -> list[str]:
    """Every problem with the config, each naming the key and its allowed range. Empty list = valid."""
    errors = []
    for spec in field_specs():
        value = getattr(getattr(cfg, spec.section), spec.name)
        if spec.choices and value not in spec.choices:
            errors.append(f"{spec.key}={value!r}: must be {spec.describe_range()}")
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            bad = (not math.isfinite(value) or (spec.min is not None and value < spec.min)
                   or (spec.max is not None and value > spec.max) or (spec.gt is not None and value <= spec.gt))
            if bad:
                errors.append(f"{spec.key}={value!r}: must be {spec.describe_range()}")
    return errors + cross_field_errors(cfg, require_data)


def check(cfg: RunConfig, require_data: bool = True) -> RunConfig:
    errors = validate(cfg, require_data)
    if errors:
        raise ConfigError("invalid configuration:\n  - " + "\n  - ".join(errors))
    return cfg


def load(path: str | Path | None = None, overrides: list[str] | dict | None = None) -> RunConfig:
    """defaults < YAML file < overrides."""
    cfg = RunConfig()
    if path is not None:
        p = Path(path)
        try:
            data = load_yaml(read_yaml_file(p), str(p))
        except YamlError as exc:
            raise ConfigError(str(exc)) from None
        if data is not None and not isinstance(data, dict):
            raise ConfigError(f"{p}: expected a mapping of sections at the top level")
        cfg = from_dict(data, cfg, source=str(p))
    if overrides:
        cfg = apply_overrides(cfg, overrides)
    cfg.data.datasets = [resolve_dataset_path(d, Path(path).parent if path else None) for d in cfg.data.datasets]
    return cfg


def resolve_dataset_path(spec: str, config_dir: Path | None) -> str:
    """Make a dataset spec's relative path absolute, so a config copied into a run folder still finds its data.

    Tried in order: the working directory, the config file's folder, the checkout root (presets say ``assets/...``).
    A path found nowhere is left as written; loading it reports the missing file.
    """
    import re

    from studio.paths import repo_root

    m = re.match(r"^(.*?)((?:#[^#@]*)?(?:@\d+)?)$", spec.strip())
    raw, suffix = (m.group(1), m.group(2)) if m else (spec, "")
    p = Path(raw).expanduser()
    if p.is_absolute():
        return spec
    for base in (Path.cwd(), config_dir, repo_root()):
        try:
            if base is not None and (base / p).exists():
                return str((base / p).resolve()) + suffix
        except OSError:  # a name too long for the filesystem: left as written, loading it names the problem
            return spec
    return spec


def dump(cfg: RunConfig) -> str:
    return yaml.safe_dump(cfg.to_dict(), sort_keys=False, allow_unicode=True)


def save(cfg: RunConfig, path: str | Path) -> None:
    Path(path).write_text(dump(cfg), encoding="utf-8")


def diff(a: RunConfig, b: RunConfig) -> list[tuple[str, Any, Any]]:
    """(key, value in a, value in b) for every field that differs; the runs history shows it."""
    out = []
    for spec in field_specs():
        va = getattr(getattr(a, spec.section), spec.name)
        vb = getattr(getattr(b, spec.section), spec.name)
        if va != vb:
            out.append((spec.key, va, vb))
    return out
