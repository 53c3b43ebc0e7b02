"""Generation for the Chat tab, ``studio chat`` and the probes: a base model and, optionally, its tuned version.

A LoRA adapter is attached to the one base copy and switched on/off per request (PEFT ``disable_adapter``), so comparing
base and tuned costs one model in memory. A full-weights run or a merged folder is loaded as a second model.
When the adapter folder carries its own tokenizer/chat template (e.g. a self-cognition run whose default system prompt
names the new identity), the tuned side uses that template.
"""

from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from studio.engine import rundir
from studio.engine.models import ModelLoadError, load_causal_lm, load_tokenizer


@dataclass
class TunedSource:
    kind: str  # "adapter" (PEFT folder) or "model" (a full model folder)
    path: Path
    base: str | None  # the base model the run or adapter was trained from, when known


def resolve_tuned(path: str | Path) -> TunedSource:
    """A run folder, an adapter folder, or a merged/full model folder -> what to load."""
    p = Path(path).expanduser()
    if not p.is_dir():
        raise ModelLoadError(f"{p}: no such folder (expected a run folder, an adapter folder or a merged model)")
    base = None
    if (p / rundir.CONFIG).is_file():  # a run folder
        from studio import config as C

        try:
            base = C.load(p / rundir.CONFIG).model.name_or_path
        except C.ConfigError:
            base = None
        for sub, kind in ((rundir.ADAPTER, "adapter"), (rundir.MODEL, "model")):
            if (p / sub).is_dir():
                return TunedSource(kind, p / sub, base)
        raise ModelLoadError(f"{p}: this run has no adapter/ or model/ yet (still training, or it failed)")
    if (p / "adapter_config.json").is_file():
        import json

        base = json.loads((p / "adapter_config.json").read_text()).get("base_model_name_or_path")
        return TunedSource("adapter", p, base)
    if (p / "config.json").is_file():
        return TunedSource("model", p, None)
    raise ModelLoadError(f"{p}: not a run folder, a PEFT adapter (adapter_config.json) or a model folder (config.json)")


def _has_own_template(folder: Path) -> bool:
    return (folder / "chat_template.jinja").is_file() or (folder / "tokenizer_config.json").is_file()


class ChatModel:
    """One base model plus an optional tuned variant; thread-safe (one generation at a time per instance)."""

    def __init__(self, model: str = "default", adapter: str | Path | None = None, trust_remote_code: bool = False):
        self.model_name = model or "default"
        self.tuned = resolve_tuned(adapter) if adapter else None
        if self.tuned and self.tuned.kind == "adapter" and self.model_name == "default" and self.tuned.base:
            self.model_name = self.tuned.base  # the adapter knows its base; trust it over the default
        self._lock = threading.Lock()
        self.tokenizer = load_tokenizer(self.model_name, trust_remote_code=trust_remote_code)
        self.model = load_causal_lm(self.model_name, trust_remote_code=trust_remote_code).eval()
        self.tuned_model = None
        self.tuned_tokenizer = self.tokenizer
        if self.tuned:
            self._load_tuned(trust_remote_code)

    def _load_tuned(self, trust_remote_code: bool) -> None:
        src = self.tuned
        if src.kind == "adapter":
            from peft import PeftModel

            try:
                self.model = PeftModel.from_pretrained(self.model, str(src.path)).eval()
            except Exception as exc:  # PEFT raises several types for a mismatched adapter
                raise ModelLoadError(f"{src.path}: cannot attach this adapter to '{self.model_name}': {exc}") from exc
        else:
            self.tuned_model = load_causal_lm(str(src.path), trust_remote_code=trust_remote_code).eval()
        if _has_own_template(src.path):
            self.tuned_tokenizer = load_tokenizer(str(src.path), trust_remote_code=trust_remote_code)

    @property
    def has_adapter(self) -> bool:
        return self.tuned is not None

    @contextlib.contextmanager
    def _variant(self, use_adapter: bool):
        """(model, tokenizer) for base or tuned; with a LoRA the adapter is switched off for the base."""
        if use_adapter and not self.tuned:
            raise ModelLoadError("no tuned model loaded: pick a run, an adapter or a merged folder")
        if self.tuned_model is not None:
            yield (self.tuned_model if use_adapter else self.model), (self.tuned_tokenizer if use_adapter else self.tokenizer)
        elif self.tuned and not use_adapter:
            with self.model.disable_adapter():
                yield self.model, self.tokenizer
        else:
            yield self.model, (self.tuned_tokenizer if use_adapter else self.tokenizer)

    def _gen_kwargs(self, tokenizer, temperature: float, top_p: float, max_new_tokens: int, repetition_penalty: float) -> dict:
        kw = {"max_new_tokens": int(max_new_tokens), "pad_token_id": tokenizer.pad_token_id,
              "repetition_penalty": float(repetition_penalty)}
        if temperature and temperature > 0:
            kw.update(do_sample=True, temperature=float(temperature), top_p=float(top_p))
        else:
            kw.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        return kw

    def stream(self, messages: list[dict], use_adapter: bool = False, temperature: float = 0.0, top_p: float = 1.0,
               max_new_tokens: int = 256, repetition_penalty: float = 1.0) -> Iterator[str]:
        """Yield the answer so far (accumulated text) as tokens arrive."""
        import torch
        from transformers import TextIteratorStreamer

        with self._lock, self._variant(use_adapter) as (model, tok):
            inputs = tok.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
            streamer = TextIteratorStreamer(tok, skip_prompt=True, skip_special_tokens=True)
            kw = self._gen_kwargs(tok, temperature, top_p, max_new_tokens, repetition_penalty)
            errors: list[BaseException] = []

            def work():
                try:
                    with torch.inference_mode():
                        model.generate(**inputs, streamer=streamer, **kw)
                except BaseException as exc:  # surfaced to the caller below
                    errors.append(exc)
                    streamer.end()

            thread = threading.Thread(target=work, daemon=True)
            thread.start()
            text = ""
            for piece in streamer:
                text += piece
                yield text
            thread.join()
            if errors:
                raise errors[0]

    def generate(self, conversations: list[list[dict]], use_adapter: bool = False, max_new_tokens: int = 128,
                 temperature: float = 0.0, top_p: float = 1.0, repetition_penalty: float = 1.0,
                 batch_size: int = 8) -> list[str]:
        """Answers for many conversations, batched with left padding (greedy by default)."""
        import torch

        answers: list[str] = []
        with self._lock, self._variant(use_adapter) as (model, tok):
            old_side = tok.padding_side
            tok.padding_side = "left"
            try:
                for i in range(0, len(conversations), batch_size):
                    chunk = conversations[i:i + batch_size]
                    texts = [tok.apply_chat_template(c, add_generation_prompt=True, tokenize=False) for c in chunk]
                    enc = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False)
                    with torch.inference_mode():
                        out = model.generate(**enc, **self._gen_kwargs(tok, temperature, top_p, max_new_tokens,
                                                                        repetition_penalty))
                    new = out[:, enc["input_ids"].shape[1]:]
                    answers += [t.strip() for t in tok.batch_decode(new, skip_special_tokens=True)]
            finally:
                tok.padding_side = old_side
        return answers


def build_messages(prompt: str, system: str = "", history: list[dict] | None = None) -> list[dict]:
    messages = [{"role": "system", "content": system}] if system else []
    return messages + list(history or []) + [{"role": "user", "content": prompt}]
