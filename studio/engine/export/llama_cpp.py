"""An exported GGUF run in a real llama.cpp runtime (``llama-cpp-python``, an optional extra: ``pip install
'tuning-studio[llamacpp]'``, which builds llama.cpp from source), compared with the merged model it came from.

    from studio.engine.export.llama_cpp import available, check_gguf
    check_gguf("exports/nova/gguf/model-q8_0.gguf", texts, token_ids, merged_logits)

On the export's check prompts (``verify.PROMPTS`` through the chat template) llama.cpp evaluates exactly the token ids
the merged model saw, and the logits are compared at every position (max |diff|, top-1 agreement) and at the first
answer token (the last prompt position: |diff| and whether both pick the same token). It also checks that llama.cpp's
own tokenizer gives the same ids, and generates a few greedy tokens to show the file answers. ``studio export`` records
the result beside transformers' own read-back check (``export.json``, ``provenance.json``, the model card) whenever the
package is installed; it does not fail an export (llama.cpp multiplies q8_0 weights with 8-bit activations, so its
logits differ from the de-quantized float ones by more than transformers' read-back).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import time
from pathlib import Path

INSTALL_HINT = ("llama-cpp-python is not installed (it builds llama.cpp from source, ~15 min on 2 cores): "
                ".venv/bin/pip install llama-cpp-python")


def available() -> bool:
    return importlib.util.find_spec("llama_cpp") is not None


def version() -> str:
    from importlib import metadata

    try:
        return metadata.version("llama-cpp-python")
    except metadata.PackageNotFoundError:
        return ""


def check_gguf(path, texts: list[str], inputs: list[list[int]], reference: list, generate_tokens: int = 16) -> dict:
    """Compare llama.cpp's logits for ``inputs`` (token ids) with ``reference`` (the merged model's logits, one
    [tokens, vocab] tensor per input). Returns {runtime, version, per_prompt: [...], max_abs_diff, top1_agreement,
    first_token_max_abs_diff, first_token_agreement, tokenizer_match, generated, seconds}."""
    import numpy as np
    from llama_cpp import Llama

    start = time.time()
    n_ctx = max(len(ids) for ids in inputs) + generate_tokens + 8
    with _plain_cpu_kernels():
        llm = Llama(model_path=str(path), n_ctx=n_ctx, logits_all=True, verbose=False, n_threads=os.cpu_count() or 1,
                    seed=0)
    rows, agree, tokens = [], 0, 0
    for text, ids, ref in zip(texts, inputs, reference):
        llm.reset()
        llm.eval(list(ids))
        got = np.asarray(llm.scores[:len(ids)], dtype=np.float32)
        want = ref.float().numpy()
        diff = np.abs(got - want)
        same = got.argmax(-1) == want.argmax(-1)
        agree, tokens = agree + int(same.sum()), tokens + len(ids)
        rows.append({"tokens": len(ids), "max_abs_diff": float(diff.max()), "top1_agreement": float(same.mean()),
                     "first_token_abs_diff": float(diff[-1].max()), "first_token_same": bool(same[-1]),
                     "first_token": int(got[-1].argmax()),
                     "tokenizer_match": llm.tokenize(text.encode("utf-8"), add_bos=False, special=True) == list(ids)})
    generated = _greedy(llm, inputs[0], generate_tokens)
    return {"runtime": "llama.cpp (llama-cpp-python)", "version": version(), "path": str(path), "per_prompt": rows,
            "max_abs_diff": max(r["max_abs_diff"] for r in rows), "top1_agreement": agree / tokens,
            "first_token_max_abs_diff": max(r["first_token_abs_diff"] for r in rows),
            "first_token_agreement": sum(r["first_token_same"] for r in rows) / len(rows),
            "tokenizer_match": all(r["tokenizer_match"] for r in rows), "generated": generated,
            "seconds": round(time.time() - start, 2)}


@contextlib.contextmanager
def _plain_cpu_kernels():
    """Load with llama.cpp's plain CPU kernels, without its "extra buffer types" (weights repacked for AMX / other
    kernels): llama-cpp-python 0.3.36's AMX int8 matmul crashed (SIGSEGV in ggml_backend_amx_mul_mat) on this 2-core
    Xeon with AMX, on the studio's GGUFs and on llama.cpp's own SmolLM2 Q4_1 alike. The binding has no argument for it,
    so the model parameters' default is adjusted while the model loads."""
    import llama_cpp.llama as binding

    original = binding.llama_cpp.llama_model_default_params

    def params():
        p = original()
        p.use_extra_bufts = False
        return p

    binding.llama_cpp.llama_model_default_params = params
    try:
        yield
    finally:
        binding.llama_cpp.llama_model_default_params = original


def _greedy(llm, prompt_ids: list[int], n: int) -> dict:
    """A few greedy tokens after the first check prompt: the file answers, and its first token is the one compared."""
    llm.reset()
    out = []
    for token in llm.generate(list(prompt_ids), temp=0.0, top_k=1, reset=True):
        if token == llm.token_eos() or len(out) >= n:
            break
        out.append(int(token))
    return {"token_ids": out, "text": llm.detokenize(out).decode("utf-8", errors="replace")}


def check_export(gguf_path, model_dir) -> dict:
    """The same check for a finished export (no reference at hand): the merged folder's logits are computed here."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from studio.engine.export.verify import logits, verification_inputs

    tok = AutoTokenizer.from_pretrained(model_dir)
    texts, inputs = verification_inputs(tok)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32, use_safetensors=True)
    ref = logits(model, inputs)
    del model
    return check_gguf(Path(gguf_path), texts, inputs, ref)
