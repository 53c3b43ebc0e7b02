"""Generation for the Chat tab, ``studio chat`` and the probes: a base model and, optionally, its tuned version.

A LoRA adapter is attached to the one base copy and switched on/off per request (PEFT ``disable_adapter``), so comparing
base and tuned costs one model in memory. A full-weights run, a merged folder or a GGUF file (``studio export`` writes all
of these; transformers de-quantizes a GGUF to float32) is loaded as a second model: twice the memory.
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
from studio.engine.access import Access
from studio.engine.models import ModelLoadError, load_causal_lm, load_tokenizer, resolve_dtype


@dataclass
class TunedSource:
    kind: str  # "adapter" (PEFT folder), "model" (a full model folder) or "gguf" (one .gguf file)
    path: Path
    base: str | None  # the base model the run or adapter was trained from, when known

    @property
    def separate(self) -> bool:
        """True when the tuned side is a second full model next to the base (not an adapter toggled on one copy)."""
        return self.kind != "adapter"


def resolve_tuned(path: str | Path) -> TunedSource:
    """A run folder, an adapter folder, a merged/full model folder or a .gguf file (or a folder holding one) -> what to
    load. ``base`` also comes from an export's export.json."""
    p = Path(path).expanduser()
    if p.is_file() and p.suffix == ".gguf":
        return TunedSource("gguf", p, _export_base(p.parent.parent) or _export_base(p.parent))
    if not p.is_dir():
        raise ModelLoadError(f"{p}: no such folder or .gguf file (expected a run folder, an adapter folder, a merged "
                             "model or a GGUF file)")
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
        return TunedSource("adapter", p, _export_base(p) or base)
    if (p / "config.json").is_file():
        return TunedSource("model", p, _export_base(p))
    ggufs = sorted(p.glob("*.gguf"))
    if len(ggufs) == 1:
        return TunedSource("gguf", ggufs[0], _export_base(p.parent) or _export_base(p))
    raise ModelLoadError(f"{p}: not a run folder, a PEFT adapter (adapter_config.json), a model folder (config.json) or "
                         f"a folder with one .gguf file{f' (it has {len(ggufs)}: pick one)' if ggufs else ''}")


def describe_tuned(path: str | Path, *, access: Access) -> TunedSource:
    """``resolve_tuned`` for a path a web caller gave: the path, and the base model it names, must pass ``access``."""
    tuned = resolve_tuned(access.path(path, "tuned model"))
    if tuned.base:
        access.model(tuned.base, f"the base model named by {tuned.path}")
    return tuned


def base_model_of(path: str | Path, *, access: Access) -> str | None:
    """The base model a tuned folder was trained (or exported) from: its run's config.yaml when it lies in a run folder,
    else what ``resolve_tuned`` finds; None when unknown or unreadable (the caller keeps its own choice)."""
    p = access.path(path, "tuned model")
    run = p.parent if (p.parent / rundir.CONFIG).is_file() else p
    if (run / rundir.CONFIG).is_file():
        from studio import config as C

        try:
            return access.model(C.load(run / rundir.CONFIG).model.name_or_path, "the run's base model")
        except C.ConfigError:
            return None
    try:
        return describe_tuned(p, access=access).base
    except ModelLoadError:
        return None


def open_chat(model: str, adapter: str | None, *, access: Access) -> "ChatModel":
    """A ChatModel for a web caller: the model, the adapter and the base it names must pass ``access``; no remote code."""
    model = access.model(model, "model")
    if adapter:
        describe_tuned(adapter, access=access)
    return ChatModel(model, adapter or None, trust_remote_code=False)


def _export_base(folder: Path) -> str | None:
    """The base model named in a ``studio export`` folder's export.json (the model the export started from)."""
    import json

    try:
        return json.loads((folder / "export.json").read_text(encoding="utf-8")).get("base") or None
    except (OSError, ValueError):
        return None


def _has_own_template(folder: Path) -> bool:
    return (folder / "chat_template.jinja").is_file() or (folder / "tokenizer_config.json").is_file()


class ChatModel:
    """One base model plus an optional tuned variant; thread-safe (one generation at a time per instance)."""

    def __init__(self, model: str = "default", adapter: str | Path | None = None, trust_remote_code: bool = False):
        self.model_name = model or "default"
        self.tuned = resolve_tuned(adapter) if adapter else None
        if self.tuned and self.model_name == "default" and self.tuned.base:
            self.model_name = self.tuned.base  # the adapter (or export) knows its base; trust it over the default
        self.lock = threading.Lock()
        self._trust = trust_remote_code
        self._model = self._tokenizer = None
        if not self.tuned_separate:  # an adapter attaches to the base now; a separate tuned model needs it only for "base"
            self._load_base()
        self.tuned_model = None
        self.tuned_tokenizer = None
        if self.tuned:
            self._load_tuned(trust_remote_code)
        if self.tuned_tokenizer is None:
            self.tuned_tokenizer = self.tokenizer

    def _load_base(self) -> None:
        """The base model and tokenizer; with a merged/GGUF tuned side this waits until the base is first asked for, so
        ``studio chat --adapter merged/`` holds one model, not two."""
        if self._tokenizer is None:
            self._tokenizer = load_tokenizer(self.model_name, trust_remote_code=self._trust)
        if self._model is None:
            self._model = load_causal_lm(self.model_name, trust_remote_code=self._trust).eval()

    @property
    def tokenizer(self):
        if self._tokenizer is None:
            self._tokenizer = load_tokenizer(self.model_name, trust_remote_code=self._trust)
        return self._tokenizer

    @property
    def model(self):
        if self._model is None:
            self._load_base()
        return self._model

    @model.setter
    def model(self, value) -> None:
        self._model = value

    def _load_tuned(self, trust_remote_code: bool) -> None:
        src = self.tuned
        if src.kind == "adapter":
            from peft import PeftModel

            try:
                self.model = PeftModel.from_pretrained(self.model, str(src.path)).eval()
            except Exception as exc:  # PEFT raises several types for a mismatched adapter
                raise ModelLoadError(f"{src.path}: cannot attach this adapter to '{self.model_name}': {exc}") from exc
        elif src.kind == "gguf":
            self.tuned_model, self.tuned_tokenizer = load_gguf(src.path)
            return
        else:
            self.tuned_model = load_causal_lm(str(src.path), trust_remote_code=trust_remote_code).eval()
        if _has_own_template(src.path):
            self.tuned_tokenizer = load_tokenizer(str(src.path), trust_remote_code=trust_remote_code)

    @property
    def tuned_separate(self) -> bool:
        """The tuned side is a second model in memory (merged folder, full run, GGUF), not an adapter on the base."""
        return bool(self.tuned and self.tuned.separate)

    @property
    def has_adapter(self) -> bool:
        return self.tuned is not None

    @contextlib.contextmanager
    def variant(self, use_adapter: bool):
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
               max_new_tokens: int = 256, repetition_penalty: float = 1.0, usage: dict | None = None) -> Iterator[str]:
        """Yield the answer so far (accumulated text) as tokens arrive. ``usage`` (a dict), when given, receives
        ``prompt_tokens`` and ``completion_tokens``. Closing the generator early (a stop string, a client that went
        away) stops the generation after the current token, before the model is released to the next caller."""
        import torch
        from transformers import StoppingCriteria, StoppingCriteriaList, TextIteratorStreamer

        with self.lock, self.variant(use_adapter) as (model, tok):
            inputs = tok.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
            streamer = TextIteratorStreamer(tok, skip_prompt=True, skip_special_tokens=True)
            kw = self._gen_kwargs(tok, temperature, top_p, max_new_tokens, repetition_penalty)
            errors: list[BaseException] = []
            cancel = threading.Event()
            counts = usage if usage is not None else {}
            counts.update(prompt_tokens=int(inputs["input_ids"].shape[1]), completion_tokens=0)

            class Watch(StoppingCriteria):  # counts new tokens and ends the generation once the reader has gone
                def __call__(self, input_ids, scores, **kwargs):
                    counts["completion_tokens"] = int(input_ids.shape[1]) - counts["prompt_tokens"]
                    return torch.full((input_ids.shape[0],), cancel.is_set(), dtype=torch.bool)

            def work():
                try:
                    with torch.inference_mode():
                        model.generate(**inputs, streamer=streamer, stopping_criteria=StoppingCriteriaList([Watch()]),
                                       **kw)
                except BaseException as exc:  # surfaced to the caller below
                    errors.append(exc)
                    streamer.end()

            thread = threading.Thread(target=work, daemon=True)
            thread.start()
            text = ""
            try:
                for piece in streamer:
                    text += piece
                    yield text
            finally:
                cancel.set()
                thread.join()
            if errors:
                raise errors[0]

    def generate(self, conversations: list[list[dict]], use_adapter: bool = False, max_new_tokens: int = 128,
                 temperature: float = 0.0, top_p: float = 1.0, repetition_penalty: float = 1.0,
                 batch_size: int = 8) -> list[str]:
        """Answers for many conversations, batched with left padding (greedy by default)."""
        import torch

        answers: list[str] = []
        with self.lock, self.variant(use_adapter) as (model, tok):
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


def load_gguf(path: Path):
    """(model, tokenizer) from a GGUF file, de-quantized to float32 by transformers. The tokenizer is the HF folder the
    file was exported from when it sits beside it (``studio export`` checks they encode identically; parsing a large
    GGUF vocabulary in Python takes seconds), else the one inside the file."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = Path(path)
    try:
        model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32).eval()
    except Exception as exc:  # unsupported architecture, damaged file, gguf package missing
        raise ModelLoadError(f"{path}: cannot load this GGUF file: {str(exc).strip().splitlines()[0][:300]}") from exc
    for obj, attr in ((model.config, "quantization_config"), (model, "hf_quantizer")):
        if hasattr(obj, attr):  # the weights are plain float32 now; generation need not know they came from GGUF
            delattr(obj, attr)
    export = path.parent.parent if (path.parent.parent / "export.json").is_file() else None
    beside = next((d for d in (path.parent, export) if d and (d / "tokenizer_config.json").is_file()), None)
    if beside is not None:
        return model, load_tokenizer(str(beside))
    try:
        tok = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    except Exception as exc:
        raise ModelLoadError(f"{path}: cannot read the tokenizer in this GGUF file: {str(exc).splitlines()[0][:300]}") from exc
    if not tok.chat_template:
        raise ModelLoadError(f"{path}: the GGUF file has no chat template (tokenizer.chat_template)")
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return model, tok


def generation_dtype() -> str:
    """What the chat engine uses ('auto': float32 on CPU). bfloat16 was no faster for decoding here (reading the weights
    dominates) and flips more greedy answers with the batch's padding, which makes before/after comparisons noisy."""
    return str(resolve_dtype("auto")).replace("torch.", "")


def build_messages(prompt: str, system: str = "", history: list[dict] | None = None) -> list[dict]:
    messages = [{"role": "system", "content": system}] if system else []
    return messages + list(history or []) + [{"role": "user", "content": prompt}]
