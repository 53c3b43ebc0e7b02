"""The rewards an RL run names in its config (``rl.reward_funcs`` rules, ``rl.reward_model`` folders): parsed and checked
here as pure text and file checks, without loading a model; ``engine/train/rewards.py`` builds them into callables.
Split out of ``config.py``, which re-exports these names."""

from __future__ import annotations

from pathlib import Path

from studio.configinput import ConfigError


REWARD_MODEL_DIR = "reward_model"
REWARD_RULES = ("language", "contains", "length")
REWARD_LANGUAGES = ("zh", "en")


class RewardSpecError(ConfigError):
    """A reward spec or reward-model path that cannot be used; the message names it and says what is allowed."""


def parse_reward_rule(spec: str) -> tuple[str, str]:
    """``language:zh`` -> ("language", "zh"); an unknown rule or a bad argument raises RewardSpecError."""
    spec = spec.strip()
    name, _, arg = spec.partition(":")
    rule, arg = name.strip().lower(), arg.strip()
    if rule not in REWARD_RULES:
        raise RewardSpecError(f"rl.reward_funcs: unknown reward {spec!r}; use one of language:zh|en, contains:WORD, length:N")
    if rule == "language" and arg not in REWARD_LANGUAGES:
        raise RewardSpecError(f"rl.reward_funcs: {spec!r}: language must be one of {', '.join(REWARD_LANGUAGES)}")
    if rule == "contains" and not arg:
        raise RewardSpecError(f"rl.reward_funcs: {spec!r}: contains needs a word, e.g. contains:thanks")
    if rule == "length" and not (arg.isdigit() and int(arg) > 0):
        raise RewardSpecError(f"rl.reward_funcs: {spec!r}: length needs a positive character count, e.g. length:80")
    return rule, arg


def find_reward_model(path: str | Path) -> Path:
    """``path`` itself when it holds a model, else ``path/reward_model`` (a reward-model run folder)."""
    p = Path(path).expanduser()
    for candidate in (p, p / REWARD_MODEL_DIR):
        if (candidate / "config.json").is_file():
            if not any(candidate.glob("*.safetensors")):
                raise RewardSpecError(f"rl.reward_model: {candidate} has no .safetensors weights "
                                      "(only safetensors are loaded, never pickled weights)")
            return candidate
    raise RewardSpecError(f"rl.reward_model: {p} is neither a reward model folder (config.json + safetensors) nor a "
                          f"reward-model run folder containing {REWARD_MODEL_DIR}/")


def reward_errors(rl) -> list[str]:
    """Every problem with the rewards of an RL run (``rl``: the config's RlSection), without loading a model."""
    errors = []
    for spec in rl.reward_funcs:
        try:
            parse_reward_rule(spec)
        except RewardSpecError as exc:
            errors.append(str(exc))
    if not rl.reward_model.strip() and not any(s.strip() for s in rl.reward_funcs):
        errors.append("rl.reward_model / rl.reward_funcs: RL stages need a reward: a reward-model run folder and/or "
                      "rules such as language:zh, contains:WORD, length:N")
    elif rl.reward_model.strip():
        try:
            find_reward_model(rl.reward_model.strip())
        except RewardSpecError as exc:
            errors.append(str(exc))
    return errors
