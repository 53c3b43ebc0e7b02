"""Reward functions for RLHF (PPO, GRPO, RLOO): a trained reward model and simple rules chosen by name.

Every reward is a callable ``reward(prompts, completions, **kwargs) -> list[float]``: the signature TRL's GRPO/RLOO
trainers call, and the one ``studio.engine.train.ppo`` calls. ``prompts`` are chat message lists (or plain strings);
``completions`` are strings or TRL's ``[{"role": "assistant", "content": ...}]`` lists. Extra keyword arguments
(TRL passes ``completion_ids``, ``trainer_state``, ...) are ignored.

Rules (``rl.reward_funcs``, one spec per entry, each scoring in [0, 1]):

=================  =================================================================================================
``language:zh``    share of the response's letters that are CJK characters (``language:en``: share that are Latin)
``contains:WORD``  1 if WORD occurs in the response (case-insensitive), else 0
``length:N``       1 at exactly N characters, falling linearly to 0 at 0 and at 2N characters
=================  =================================================================================================

A reward model (``rl.reward_model``) is a folder saved by a reward-model run (``<run>/reward_model/``, or the run
folder itself): a sequence classifier with one label that scores the last non-pad token. Its weights are read from
safetensors only: a user-given path is never unpickled.
"""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path

# the specs are parsed in studio.config (validation needs them without the engine); re-exported for callers
from studio.rewardspec import REWARD_MODEL_DIR, RewardSpecError, find_reward_model, parse_reward_rule, reward_errors  # noqa: F401


def completion_text(completion) -> str:
    """TRL hands conversational completions as message lists; PPO hands plain strings."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, list):
        return "".join(m.get("content", "") for m in completion if isinstance(m, dict))
    if isinstance(completion, dict):
        return str(completion.get("content", ""))
    return str(completion)


# ----------------------------------------------------------------------------------------------------------------------------
# Rule rewards


def _is_cjk(ch: str) -> bool:
    return "CJK" in unicodedata.name(ch, "") or "\u3040" <= ch <= "\u30ff"  # Han, CJK punctuation, kana


def language_share(text: str, lang: str) -> float:
    """Share of the letters in ``text`` that belong to ``lang`` (CJK for zh, Latin for en); 0 for a text with no letters."""
    letters = [ch for ch in text if ch.isalpha()]
    if not letters:
        return 0.0
    cjk = sum(_is_cjk(ch) for ch in letters)
    return cjk / len(letters) if lang == "zh" else (len(letters) - cjk) / len(letters)


class RuleReward:
    """One parsed rule spec; callable with TRL's reward signature. ``__name__`` names it in TRL's logs."""

    def __init__(self, spec: str):
        self.spec = spec.strip()
        self.rule, self.arg = parse_reward_rule(self.spec)
        self.__name__ = re.sub(r"\W+", "_", f"{self.rule}_{self.arg}").strip("_")

    def score(self, text: str) -> float:
        if self.rule == "language":
            return language_share(text, self.arg)
        if self.rule == "contains":
            return 1.0 if self.arg.lower() in text.lower() else 0.0
        n = int(self.arg)
        return max(0.0, 1.0 - abs(len(text.strip()) - n) / n)

    def __call__(self, prompts, completions, **kwargs) -> list[float]:
        return [self.score(completion_text(c)) for c in completions]

    def __repr__(self) -> str:
        return f"RuleReward({self.spec!r})"


# ----------------------------------------------------------------------------------------------------------------------------
# Reward model


class RewardModelScorer:
    """Scores (prompt, completion) pairs with a trained reward model, in batches, through its own chat template."""

    __name__ = "reward_model"

    def __init__(self, path: str | Path, batch_size: int = 8, max_length: int = 1024):
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        self.path = find_reward_model(path)
        self.batch_size, self.max_length = batch_size, max_length
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(self.path)
            self.model = AutoModelForSequenceClassification.from_pretrained(self.path, num_labels=1, use_safetensors=True,
                                                                            dtype=torch.float32)
        except Exception as exc:  # transformers raises many types for one user problem: an unusable folder
            raise RewardSpecError(f"rl.reward_model: cannot load {self.path}: {str(exc).splitlines()[0][:300]}") from exc
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        if self.model.config.pad_token_id is None:  # the head finds the last token through the pad id
            self.model.config.pad_token_id = self.tokenizer.pad_token_id
        self.model.eval().requires_grad_(False)

    def text(self, prompt, completion) -> str:
        """The conversation as the reward model saw it in training: prompt + answer through the chat template."""
        answer = completion_text(completion)
        if isinstance(prompt, str):
            return prompt + answer
        messages = list(prompt) + [{"role": "assistant", "content": answer}]
        if self.tokenizer.chat_template:
            return self.tokenizer.apply_chat_template(messages, tokenize=False)
        return "\n".join(m["content"] for m in messages)

    def __call__(self, prompts, completions, **kwargs) -> list[float]:
        import torch

        texts = [self.text(p, c) for p, c in zip(prompts, completions)]
        scores: list[float] = []
        for i in range(0, len(texts), self.batch_size):
            enc = self.tokenizer(texts[i:i + self.batch_size], return_tensors="pt", padding=True, truncation=True,
                                 max_length=self.max_length, add_special_tokens=False, padding_side="right")
            with torch.inference_mode():
                scores += self.model(**enc).logits[:, 0].float().tolist()
        return scores


# ----------------------------------------------------------------------------------------------------------------------------
# From the config


def build_reward_funcs(rl_cfg, batch_size: int = 8) -> list:
    """The reward callables of a run: the reward model (if any) first, then every rule, in config order."""
    funcs: list = []
    if rl_cfg.reward_model.strip():
        funcs.append(RewardModelScorer(rl_cfg.reward_model.strip(), batch_size=batch_size))
    funcs += [RuleReward(spec) for spec in rl_cfg.reward_funcs if spec.strip()]
    if not funcs:
        raise RewardSpecError("no reward: set rl.reward_model (a reward-model run) and/or rl.reward_funcs "
                              "(e.g. language:zh, contains:WORD, length:N)")
    return funcs


def check_specs(rl_cfg) -> list[str]:
    """Config-time problems (no model loading): the same check ``studio.config.validate`` runs."""
    return reward_errors(rl_cfg)


def combine(funcs: list):
    """One reward for PPO: the sum of every reward (as TRL does with unit reward_weights)."""

    def total(prompts, completions, **kwargs) -> list[float]:
        columns = [f(prompts, completions, **kwargs) for f in funcs]
        return [float(sum(col)) for col in zip(*columns)]

    return total
