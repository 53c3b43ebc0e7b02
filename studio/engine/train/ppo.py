"""PPO-style RLHF (InstructGPT recipe) in one module, on transformers + PEFT: TRL 1.16 has no PPO trainer any more.

Run it: ``studio train presets/ppo.yaml`` (``method.stage=ppo``). One model in memory: the policy is the base model with a
LoRA adapter plus a small value head on its last hidden state; the frozen reference is the same model with the adapter
switched off. Each step:

1. rollout: sample an answer for each of ``rl.rollout_batch_size`` prompts (chat template, temperature/top-k/top-p);
2. score: the reward (reward model and/or rules, see ``rewards.py``) of each whole answer, given at its last token;
   every token also pays ``kl_coef * (log p_policy - log p_ref)``, the per-token KL penalty to the reference;
3. advantages: GAE (``gamma``, ``lam``) over the answer tokens from the value head's estimates, whitened per batch;
4. update: ``ppo_epochs`` passes of minibatches with the clipped policy loss and the clipped value loss;
5. optionally adapt ``kl_coef`` towards ``rl.target_kl`` (Ziegler et al. 2019).

Logged per step (metrics.jsonl): reward, reward_std, kl, kl_coef, entropy, policy_loss, value_loss, loss,
response_length, clip_fraction, lr, grad_norm, and ``rewards/<name>`` per reward. Stop/abort (STOP file, SIGTERM) is
honoured after the current step through the same RunFolderCallback as every trainer; the adapter and the value head
(``adapter/value_head.safetensors``) are saved at the end and on abort.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from studio.config import ConfigError, RunConfig
from studio.engine import rundir
from studio.engine.train import common

VALUE_HEAD_FILE = "value_head.safetensors"


# ----------------------------------------------------------------------------------------------------------------------------
# The math, on plain tensors [batch, response tokens]; ``mask`` is 1 on answer tokens (through the first EOS)


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return (x * mask).sum() / mask.sum().clamp(min=1)


def masked_whiten(x: torch.Tensor, mask: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    mean = masked_mean(x, mask)
    var = masked_mean((x - mean) ** 2, mask)
    return (x - mean) * torch.rsqrt(var + eps) * mask


def kl_rewards(scores: torch.Tensor, logprobs: torch.Tensor, ref_logprobs: torch.Tensor, mask: torch.Tensor,
               kl_coef: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token rewards: ``-kl_coef * (log p - log p_ref)`` everywhere, plus the score on each answer's last token."""
    kl = (logprobs - ref_logprobs) * mask
    rewards = -kl_coef * kl
    last = (mask.sum(1).long() - 1).clamp(min=0)
    rewards[torch.arange(len(scores)), last] += scores
    return rewards, kl


def gae(rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float,
        lam: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation; the value after an answer's last token is 0 (the episode ends there)."""
    advantages = torch.zeros_like(rewards)
    next_adv = torch.zeros(rewards.shape[0], dtype=rewards.dtype)
    n = rewards.shape[1]
    for t in reversed(range(n)):
        alive = mask[:, t + 1] if t + 1 < n else torch.zeros_like(next_adv)
        next_value = values[:, t + 1] * alive if t + 1 < n else torch.zeros_like(next_adv)
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        next_adv = (delta + gamma * lam * next_adv * alive) * mask[:, t]
        advantages[:, t] = next_adv
    return advantages, (advantages + values) * mask


def policy_loss(logprobs: torch.Tensor, old_logprobs: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor,
                cliprange: float) -> tuple[torch.Tensor, torch.Tensor]:
    """PPO's clipped surrogate (to minimise) and the share of tokens where the clip was active."""
    ratio = torch.exp(logprobs - old_logprobs)
    unclipped = -advantages * ratio
    clipped = -advantages * ratio.clamp(1.0 - cliprange, 1.0 + cliprange)
    return masked_mean(torch.maximum(unclipped, clipped), mask), masked_mean((clipped > unclipped).float(), mask)


def value_loss(values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor,
               cliprange_value: float) -> torch.Tensor:
    clipped = old_values + (values - old_values).clamp(-cliprange_value, cliprange_value)
    return 0.5 * masked_mean(torch.maximum((values - returns) ** 2, (clipped - returns) ** 2), mask)


class AdaptiveKL:
    """Ziegler et al.: nudge the KL coefficient so the measured KL tracks ``target`` (fixed when target is 0)."""

    def __init__(self, coef: float, target: float, horizon: int = 10000):
        self.coef, self.target, self.horizon = coef, target, horizon

    def update(self, kl: float, n_samples: int) -> float:
        if self.target > 0:
            error = max(-0.2, min(0.2, kl / self.target - 1.0))
            self.coef *= 1.0 + error * n_samples / self.horizon
        return self.coef


# ----------------------------------------------------------------------------------------------------------------------------
# Policy, value head, log-probabilities


class ValueHead(nn.Module):
    """One linear layer from the last hidden state to a scalar value; zero-initialised (values start at 0)."""

    def __init__(self, hidden_size: int):
        super().__init__()
        self.linear = nn.Linear(hidden_size, 1)
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.linear(hidden.float()).squeeze(-1)


def forward(model, head: ValueHead, input_ids, attention_mask, n_prompt: int, temperature: float):
    """Log-probs of the answer tokens (at the sampling temperature), their values and entropies: each [B, R]."""
    position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)  # left padding: positions as generate() saw them
    n_resp = input_ids.shape[1] - n_prompt
    out = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, use_cache=False,
                output_hidden_states=True, logits_to_keep=n_resp + 1)
    logits = out.logits[:, :-1].float() / temperature
    logp_all = torch.log_softmax(logits, dim=-1)
    logprobs = logp_all.gather(-1, input_ids[:, n_prompt:, None]).squeeze(-1)
    entropy = -(logp_all.exp() * logp_all).sum(-1)
    values = head(out.hidden_states[-1][:, n_prompt - 1:-1])
    return logprobs, values, entropy


def build_policy(cfg: RunConfig, log=print):
    model = common.build_model(cfg, log)  # the LoRA (or QLoRA) model, with exactly the adapter trainable
    head = ValueHead(model.config.get_text_config().hidden_size)
    model.eval()  # no dropout: rollout and update log-probs must agree for the ratio to mean anything
    return model, head


# ----------------------------------------------------------------------------------------------------------------------------
# Rollouts


@dataclass
class Rollout:
    input_ids: torch.Tensor  # [B, P + R] prompt (left-padded) + answer (right-padded)
    attention_mask: torch.Tensor
    mask: torch.Tensor  # [B, R] answer tokens through the first EOS
    n_prompt: int
    logprobs: torch.Tensor
    ref_logprobs: torch.Tensor
    values: torch.Tensor
    scores: torch.Tensor
    texts: list[str]
    reward_columns: dict


def answer_mask(response: torch.Tensor, eos_ids: list[int]) -> torch.Tensor:
    """1 on every answer token up to and including the first EOS, 0 on the padding after it."""
    is_eos = torch.isin(response, torch.tensor(eos_ids))
    after_eos = (is_eos.cumsum(1) - is_eos.long()) > 0
    return (~after_eos).float()


@torch.no_grad()
def rollout(model, head, tokenizer, prompts: list[list[dict]], reward_funcs: list, cfg: RunConfig) -> Rollout:
    from transformers import GenerationConfig

    rl = cfg.rl
    texts = [tokenizer.apply_chat_template(p, tokenize=False, add_generation_prompt=True) for p in prompts]
    enc = tokenizer(texts, return_tensors="pt", padding=True, padding_side="left", add_special_tokens=False,
                    truncation=True, max_length=cfg.training.cutoff_len)
    eos_ids = sorted({tokenizer.eos_token_id, *_as_list(model.generation_config.eos_token_id)} - {None})
    gen = GenerationConfig(do_sample=True, max_new_tokens=rl.max_new_tokens, temperature=rl.temperature,
                           top_k=rl.top_k or None, top_p=rl.top_p, eos_token_id=eos_ids, pad_token_id=tokenizer.pad_token_id,
                           use_cache=True)
    out = model.generate(**enc, generation_config=gen)
    n_prompt = enc["input_ids"].shape[1]
    mask = answer_mask(out[:, n_prompt:], eos_ids)
    attention = torch.cat([enc["attention_mask"], mask.long()], dim=1)
    logprobs, values, _ = forward(model, head, out, attention, n_prompt, rl.temperature)
    with model.disable_adapter():
        ref_logprobs, _, _ = forward(model, head, out, attention, n_prompt, rl.temperature)
    answers = tokenizer.batch_decode(out[:, n_prompt:] * mask.long() + tokenizer.pad_token_id * (1 - mask.long()),
                                     skip_special_tokens=True)
    columns = {getattr(f, "__name__", "reward"): [float(x) for x in f(prompts, answers)] for f in reward_funcs}
    scores = torch.tensor([sum(col) for col in zip(*columns.values())], dtype=torch.float32)
    return Rollout(out, attention, mask, n_prompt, logprobs * mask, ref_logprobs * mask, values * mask, scores, answers,
                   columns)


def _as_list(x) -> list:
    return [] if x is None else list(x) if isinstance(x, (list, tuple)) else [x]


# ----------------------------------------------------------------------------------------------------------------------------
# One PPO step


def ppo_update(model, head, optimizer, scheduler, ro: Rollout, kl_coef: float, cfg: RunConfig) -> dict:
    """Advantages from the rollout, then ``ppo_epochs`` passes of clipped-loss minibatch updates; returns step metrics."""
    rl, t = cfg.rl, cfg.training
    rewards, kl = kl_rewards(ro.scores, ro.logprobs, ro.ref_logprobs, ro.mask, kl_coef)
    advantages, returns = gae(rewards, ro.values, ro.mask, rl.gamma, rl.lam)
    if rl.whiten:
        advantages = masked_whiten(advantages, ro.mask)
    params = [p for p in model.parameters() if p.requires_grad] + list(head.parameters())
    size = min(t.per_device_train_batch_size, len(ro.scores))
    names = ("policy_loss", "value_loss", "loss", "clip_fraction", "entropy", "grad_norm")
    stats: dict[str, list[float]] = {k: [] for k in names}
    for _ in range(rl.ppo_epochs):
        order = torch.randperm(len(ro.scores))
        for start in range(0, len(order), size):
            idx = order[start:start + size]
            width = ro.n_prompt + int(ro.mask[idx].sum(1).max())  # drop columns that are padding in the whole minibatch
            logprobs, values, entropy = forward(model, head, ro.input_ids[idx, :width], ro.attention_mask[idx, :width],
                                                ro.n_prompt, rl.temperature)
            n = width - ro.n_prompt
            m = ro.mask[idx, :n]
            pg, clipfrac = policy_loss(logprobs, ro.logprobs[idx, :n], advantages[idx, :n], m, rl.cliprange)
            vf = value_loss(values, ro.values[idx, :n], returns[idx, :n], m, rl.cliprange_value)
            loss = pg + rl.vf_coef * vf
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            norm = torch.nn.utils.clip_grad_norm_(params, t.max_grad_norm if t.max_grad_norm > 0 else float("inf"))
            optimizer.step()
            scheduler.step()
            for k, v in (("policy_loss", pg), ("value_loss", vf), ("loss", loss), ("clip_fraction", clipfrac),
                         ("entropy", masked_mean(entropy, m)), ("grad_norm", norm)):
                stats[k].append(float(v.detach()))
    metrics = {k: sum(v) / len(v) for k, v in stats.items()}
    metrics.update(reward=float(ro.scores.mean()), reward_std=float(ro.scores.std()) if len(ro.scores) > 1 else 0.0,
                   kl=float(kl.sum(1).mean()), kl_coef=kl_coef, response_length=float(ro.mask.sum(1).mean()),
                   lr=scheduler.get_last_lr()[0])
    metrics.update({f"rewards/{k}": sum(v) / len(v) for k, v in ro.reward_columns.items()})
    return metrics


# ----------------------------------------------------------------------------------------------------------------------------
# The run


def train(cfg: RunConfig, run_dir: Path, resume: bool, callback, log=print, reward_funcs: list | None = None) -> dict:
    """Train one PPO run into ``run_dir`` (``reward_funcs`` overrides the config's rewards, for tests)."""
    from transformers import TrainerControl, TrainerState

    from studio.engine.data.prompts import load_prompts
    from studio.engine.train.rewards import build_reward_funcs

    if resume:
        raise ConfigError("ppo runs cannot be resumed: start a new run")
    t, rl = cfg.training, cfg.rl
    if t.frozen_dtype == "auto" and not torch.cuda.is_available():
        t.frozen_dtype = "float32"  # measured on CPU: sampling with bf16 frozen weights was ~25x slower than fp32
    tokenizer = common.start(cfg)
    prompts, report = load_prompts(cfg.data)
    common.write_data_report(run_dir, report)
    funcs = reward_funcs if reward_funcs is not None else build_reward_funcs(rl)
    log(f"ppo: {len(prompts)} prompts, rewards: {', '.join(getattr(f, '__name__', 'reward') for f in funcs)}")
    model, head = build_policy(cfg, log)
    per_epoch = math.ceil(len(prompts) / rl.rollout_batch_size)
    max_steps = t.max_steps if t.max_steps > 0 else max(1, math.ceil(per_epoch * t.num_train_epochs))
    params = [p for p in model.parameters() if p.requires_grad] + list(head.parameters())
    updates = max_steps * rl.ppo_epochs * math.ceil(rl.rollout_batch_size / min(t.per_device_train_batch_size,
                                                                                  rl.rollout_batch_size))
    optimizer, scheduler = common.optimizer(cfg, params, updates)
    state, control = TrainerState(max_steps=max_steps, num_train_epochs=t.num_train_epochs), TrainerControl()
    callback.on_train_begin(None, state, control)
    history = _loop(model, head, tokenizer, prompts, funcs, optimizer, scheduler, cfg, callback, state, control, log)
    out = save_policy(model, head, tokenizer, run_dir)
    rewards = [h["reward"] for h in history]
    return {"output": str(out), "step": state.global_step, "final_loss": history[-1]["loss"] if history else None,
            "first_reward": rewards[0] if rewards else None, "final_reward": rewards[-1] if rewards else None,
            "final_kl": history[-1]["kl"] if history else None}


def _loop(model, head, tokenizer, prompts, funcs, optimizer, scheduler, cfg, callback, state, control, log) -> list[dict]:
    rl = cfg.rl
    kl_ctl = AdaptiveKL(rl.kl_coef, rl.target_kl)
    order: list[int] = []
    rng = random.Random(cfg.training.seed)
    history, tokens, per_epoch = [], 0, math.ceil(len(prompts) / rl.rollout_batch_size)
    while state.global_step < state.max_steps:
        while len(order) < rl.rollout_batch_size:  # fresh shuffled passes over the prompts
            order += rng.sample(range(len(prompts)), len(prompts))
        batch, order = [prompts[i] for i in order[:rl.rollout_batch_size]], order[rl.rollout_batch_size:]
        start = time.time()
        ro = rollout(model, head, tokenizer, batch, funcs, cfg)
        metrics = ppo_update(model, head, optimizer, scheduler, ro, kl_ctl.coef, cfg)
        kl_ctl.update(metrics["kl"], len(batch))
        tokens += int(ro.attention_mask.sum())
        metrics.update(num_tokens=tokens, step_time=round(time.time() - start, 3))
        history.append(metrics)
        state.global_step += 1
        state.epoch = state.global_step / per_epoch
        callback.on_step_end(None, state, control)
        if state.global_step % cfg.training.logging_steps == 0 or control.should_training_stop \
                or state.global_step == state.max_steps:
            callback.on_log(None, state, control, logs=metrics)
        log(f"step {state.global_step}/{state.max_steps}: reward {metrics['reward']:.4f} kl {metrics['kl']:.4f} "
            f"loss {metrics['loss']:.4f} e.g. {ro.texts[0][:60]!r}")
        if control.should_training_stop:
            break
    return history


def save_policy(model, head: ValueHead, tokenizer, run_dir: Path) -> Path:
    """The LoRA adapter (loads like any SFT adapter) plus the value head, in safetensors."""
    from safetensors.torch import save_file

    out = Path(run_dir) / rundir.ADAPTER
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    save_file({k: v.detach().contiguous() for k, v in head.state_dict().items()}, str(out / VALUE_HEAD_FILE))
    return out


def load_value_head(adapter_dir: Path, hidden_size: int) -> ValueHead:
    """A saved value head (safetensors only)."""
    from safetensors.torch import load_file

    head = ValueHead(hidden_size)
    head.load_state_dict(load_file(str(Path(adapter_dir) / VALUE_HEAD_FILE)))
    return head
