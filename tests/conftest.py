"""Shared fixtures (helpers to import live in tests/helpers.py): an isolated STUDIO_HOME per test session and a tiny random Llama with the default model's tokenizer.

The tiny model keeps the real SmolLM2 tokenizer and chat template (so data rendering is exercised for real) but has two
layers of width 32, so a training step takes milliseconds.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.helpers import write_jsonl  # noqa: E402  (after the checkout is on sys.path)


@pytest.fixture(scope="session", autouse=True)
def studio_home(tmp_path_factory) -> Path:
    """Every test session gets its own STUDIO_HOME, so tests never touch a user's runs or models.

    Set TEST_STUDIO_HOME to reuse one across sessions (saves the 30 s default-model conversion while developing).
    """
    home = Path(os.environ.get("TEST_STUDIO_HOME") or tmp_path_factory.mktemp("studio_home"))
    os.environ["STUDIO_HOME"] = str(home)
    return home


@pytest.fixture(scope="session")
def default_tokenizer_dir(tmp_path_factory) -> Path:
    """The embedded model's tokenizer (with its ChatML template), read straight from the GGUF: no model conversion."""
    from transformers import AutoTokenizer

    from studio.engine.models import gguf_source

    src = gguf_source()
    out = tmp_path_factory.mktemp("tokenizer")
    AutoTokenizer.from_pretrained(src.parent, gguf_file=src.name).save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def tiny_model_dir(default_tokenizer_dir, tmp_path_factory) -> Path:
    """A 2-layer random Llama (hidden 32) saved with the default tokenizer: a valid `model.name_or_path`."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tok = AutoTokenizer.from_pretrained(default_tokenizer_dir)
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, max_position_embeddings=2048, tie_word_embeddings=True,
                      bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    out = tmp_path_factory.mktemp("tiny_llama")
    LlamaForCausalLM(cfg).save_pretrained(out)
    tok.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def default_model_dir(studio_home) -> Path:
    """The real embedded default model, converted once per session (~30 s); for the slow tier."""
    from studio.engine.models import ensure_default_model

    return ensure_default_model()


@pytest.fixture
def alpaca_file(tmp_path) -> Path:
    rows = [{"instruction": f"Say the number {i}.", "input": "", "output": f"The number is {i}."} for i in range(24)]
    return write_jsonl(tmp_path / "alpaca.jsonl", rows)
