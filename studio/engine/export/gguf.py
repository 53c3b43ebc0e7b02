"""Write a merged model as one GGUF file (llama.cpp, Ollama, LM Studio) plus an Ollama ``Modelfile``, and check it.

    from studio.engine.export.gguf import export_gguf
    export_gguf("exports/demo", "q8_0")   # -> exports/demo/gguf/model-q8_0.gguf and exports/demo/gguf/Modelfile

Supported: ``LlamaForCausalLM`` (model_type 'llama', e.g. SmolLM/SmolLM2, the embedded default model) with default RoPE
(no rope scaling), no attention/MLP biases and a byte-level BPE tokenizer (GPT-2 style tokenizer.json, pre-tokenizer
gpt-2, smollm or llama-bpe). Anything else (Qwen2, Mistral, Gemma, Llama-3.1 rope scaling, sentencepiece vocabularies)
raises ExportError saying what is unsupported; llama.cpp's own convert_hf_to_gguf.py covers those.

The layout follows llama.cpp's convert_hf_to_gguf.py for Llama: tensors renamed with gguf-py's tensor map, q_proj/k_proj
rows permuted into ggml's rotary layout, 1-D tensors (norms) kept float32, 2-D tensors in the chosen type (q8_0 falls
back to f16 for rows not a multiple of 32), tokenizer as 'gpt2' tokens + merges + token types, special ids and the
chat template. The check reads the file back with transformers (``from_pretrained(..., gguf_file=...)``), compares its
logits with the source folder's and its tokenizer's ids with the source tokenizer's.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from studio.engine.export.verify import (ExportError, Progress, VerificationError, compare_logits, judge, logits,
                                        verification_inputs)

QTYPES = ("f16", "q8_0", "bf16", "f32")
# Logits of the file read back vs. the source, as max |diff| / max(1, largest |logit|). Measured on the default model with
# a merged LoRA (logit scale 39): f16 1.2e-3, bf16 8.9e-3, q8_0 3.3e-2 (top-1 agreement 100 / 100 / 99.4 %). The strict
# part of the check is weight_error (every weight within its type's rounding bound); these catch the rest.
TOLERANCE = {"f32": 1e-4, "f16": 1e-2, "bf16": 5e-2, "q8_0": 1e-1}
MIN_TOP1 = {"f32": 0.99, "f16": 0.97, "bf16": 0.9, "q8_0": 0.9}
PRE_TOKENIZERS = ("gpt-2", "smollm", "llama-bpe")
_LLAMA3_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+"
                 r"|\s+(?!\S)|\s+")


def export_gguf(model_dir, qtype: str = "q8_0", out_dir=None, overwrite: bool = False, *, verify: bool = True,
                name: str = "", reference: tuple | None = None, progress=None) -> dict:
    """``model_dir`` (a merged HF folder) -> ``out_dir/model-<qtype>.gguf`` + ``out_dir/Modelfile`` (default out_dir:
    model_dir/gguf). Raises VerificationError when transformers' reading of the file disagrees with the source.

    ``name`` goes into general.name (default: the folder's name). ``reference`` = (texts, token ids, logits) of the
    source, when the caller already has them (saves a model load). The Modelfile points at the file written last.
    Returns {path, modelfile, qtype, size_bytes, ok, max_abs_diff, tolerance, top1_agreement, tokenizer_match,
    seconds, warnings}.
    """
    import time

    if qtype not in QTYPES:
        raise ExportError(f"gguf type {qtype!r}: must be one of {', '.join(QTYPES)}")
    model_dir = Path(model_dir).expanduser()
    if not (model_dir / "config.json").is_file():
        raise ExportError(f"{model_dir}: not a merged model folder (no config.json); merge the adapter first")
    out = Path(out_dir).expanduser() if out_dir else model_dir / "gguf"
    path = out / f"model-{qtype}.gguf"
    if path.exists() and not overwrite:
        raise ExportError(f"{path}: exists (pass --overwrite to replace it)")
    report = Progress(progress)
    start = time.time()
    out.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        report(0.05, f"writing {path.name}")
        tok = write_gguf(model_dir, tmp, qtype, name or model_dir.resolve().name)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    text, warnings = modelfile(tok, path.name, model_dir)
    (out / "Modelfile").write_text(text, encoding="utf-8")
    result = {"path": str(path), "modelfile": str(out / "Modelfile"), "qtype": qtype, "size_bytes": path.stat().st_size,
              "warnings": warnings, "ok": True}
    if verify:
        report(0.5, f"reading {path.name} back with transformers and comparing logits")
        result.update(verify_gguf(path, model_dir, qtype, reference))
    result["seconds"] = round(time.time() - start, 1)
    report(1.0, f"{path.name}: {result['size_bytes'] / 2**20:.0f} MB")
    if not result["ok"]:
        path.unlink(missing_ok=True)  # a file that failed its check is not left to be shipped
        raise VerificationError(f"GGUF check failed for {path.name}: max abs diff {result['max_abs_diff']:.3g} (tolerance "
                                f"{result['tolerance']:.3g}), top-1 agreement {result['top1_agreement']:.1%}, tokenizer "
                                f"{'identical' if result['tokenizer_match'] else 'different'}, worst weight error "
                                f"{result['weight_error']:.3g} x its rounding bound", result)
    return result


def verify_gguf(path: Path, model_dir: Path, qtype: str, reference: tuple | None = None) -> dict:
    """Round trip: transformers loads the GGUF (de-quantized to float32); logits and token ids are compared."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = Path(path)
    if reference is None or reference[2] is None:
        tok = AutoTokenizer.from_pretrained(model_dir)
        texts, inputs = verification_inputs(tok)
        src = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32, use_safetensors=True)
        ref = logits(src, inputs)
        del src
    else:
        texts, inputs, ref = reference
    g_tok = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    g_ids = [g_tok(t, add_special_tokens=False)["input_ids"] for t in texts]
    g_model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32)
    got = logits(g_model, inputs)
    worst = weight_error(g_model, model_dir, qtype)
    del g_model
    result = judge(compare_logits(ref, got), TOLERANCE[qtype], "merged model", len(inputs))
    result["tokenizer_match"] = g_ids == [list(i) for i in inputs]
    result["weight_error"] = worst
    result["ok"] = (result["ok"] and result["top1_agreement"] >= MIN_TOP1[qtype] and result["tokenizer_match"]
                    and worst <= 1.0)
    return result


def weight_error(g_model, model_dir: Path, qtype: str) -> float:
    """Worst ratio, over every weight, of |GGUF value - source value| to the rounding bound of ``qtype``: <= 1 when the
    file holds exactly the source weights rounded to that type, in the right layout; a wrong mapping or permutation
    gives ratios in the hundreds. (Logits alone cannot tell rounding noise from a small layout bug.)"""
    from safetensors import safe_open

    params = dict(g_model.named_parameters())
    worst = 0.0
    for file in sorted(Path(model_dir).glob("*.safetensors")):
        with safe_open(str(file), framework="pt") as f:
            for name in f.keys():
                if name not in params:
                    if name == "lm_head.weight":
                        continue  # a tied model's lm_head is the embedding
                    return float("inf")  # a weight the file lost
                src = f.get_tensor(name).float()
                err = (params[name].detach() - src).abs()
                worst = max(worst, float((err / _rounding_bound(src, qtype)).max()))
    return worst


def _rounding_bound(w, qtype: str):
    """Largest error rounding ``w`` to ``qtype`` may cause (with margin), element-wise."""
    tiny = 1e-7  # float16 sub-normals
    if w.ndim == 1 or qtype == "f32":
        return w.abs() * 1e-7 + 1e-30
    if qtype == "q8_0" and w.shape[-1] % 32 == 0:
        # one int8 step of the block's scale (max |block| / 127): twice the rounding error, covering the f16 scale too
        block_max = w.reshape(*w.shape[:-1], -1, 32).abs().amax(-1, keepdim=True)
        return (block_max / 127).expand(*w.shape[:-1], -1, 32).reshape(w.shape) + tiny
    rel = 2.0 ** -7 if qtype == "bf16" else 2.0 ** -10  # twice the largest relative rounding error (8 and 11 bits)
    return w.abs() * rel + tiny


# ----------------------------------------------------------------------------------------------------------------------
# Writing


def llama_hparams(cfg) -> dict:
    """The hyper-parameters GGUF stores for 'llama'; ExportError for what this exporter does not handle."""
    archs = getattr(cfg, "architectures", None) or []
    if cfg.model_type != "llama" or archs and archs[0] != "LlamaForCausalLM":
        raise ExportError(f"GGUF export supports LlamaForCausalLM only (this model: {archs[0] if archs else cfg.model_type}); "
                          "use llama.cpp's convert_hf_to_gguf.py for other architectures")
    rope = getattr(cfg, "rope_parameters", None) or {}
    scaling = getattr(cfg, "rope_scaling", None) or {}
    rope_type = rope.get("rope_type") or scaling.get("rope_type") or scaling.get("type") or "default"
    if rope_type != "default":
        raise ExportError(f"GGUF export: rope scaling '{rope_type}' is not supported by this exporter")
    if getattr(cfg, "attention_bias", False) or getattr(cfg, "mlp_bias", False):
        raise ExportError("GGUF export: attention/MLP biases are not supported by this exporter")
    heads = cfg.num_attention_heads
    return {"layers": cfg.num_hidden_layers, "hidden": cfg.hidden_size, "ffn": cfg.intermediate_size, "heads": heads,
            "kv_heads": getattr(cfg, "num_key_value_heads", None) or heads,
            "head_dim": getattr(cfg, "head_dim", None) or cfg.hidden_size // heads,
            "context": cfg.max_position_embeddings, "eps": cfg.rms_norm_eps,
            "theta": float(rope.get("rope_theta") or getattr(cfg, "rope_theta", None) or 10000.0),
            "vocab": cfg.vocab_size, "tied": bool(getattr(cfg, "tie_word_embeddings", False))}


def write_gguf(model_dir: Path, path: Path, qtype: str, name: str = ""):
    """Write the GGUF file; returns the tokenizer (the Modelfile needs it). Tensors are streamed shard by shard."""
    import gguf
    from transformers import AutoConfig, AutoTokenizer

    cfg = AutoConfig.from_pretrained(model_dir)
    hp = llama_hparams(cfg)
    tok = AutoTokenizer.from_pretrained(model_dir)
    tokens, types, merges, pre = byte_level_vocab(tok, hp["vocab"])
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_name(name or Path(model_dir).resolve().name)
    w.add_context_length(hp["context"])
    w.add_embedding_length(hp["hidden"])
    w.add_block_count(hp["layers"])
    w.add_feed_forward_length(hp["ffn"])
    w.add_head_count(hp["heads"])
    w.add_head_count_kv(hp["kv_heads"])
    w.add_layer_norm_rms_eps(hp["eps"])
    w.add_rope_freq_base(hp["theta"])
    w.add_rope_dimension_count(hp["head_dim"])
    if hp["head_dim"] != hp["hidden"] // hp["heads"]:
        w.add_key_length(hp["head_dim"])
        w.add_value_length(hp["head_dim"])
    w.add_vocab_size(hp["vocab"])
    ftype = {"f32": gguf.LlamaFileType.ALL_F32, "f16": gguf.LlamaFileType.MOSTLY_F16,
             "bf16": gguf.LlamaFileType.MOSTLY_BF16, "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0}[qtype]
    w.add_file_type(ftype)
    if qtype == "q8_0":
        w.add_quantization_version(gguf.GGML_QUANT_VERSION)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre(pre)
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(merges)
    for key, fn in (("bos_token_id", w.add_bos_token_id), ("eos_token_id", w.add_eos_token_id),
                    ("unk_token_id", w.add_unk_token_id), ("pad_token_id", w.add_pad_token_id)):
        if getattr(tok, key, None) is not None:
            fn(getattr(tok, key))
    probe = tok("a", add_special_tokens=True)["input_ids"]
    w.add_add_bos_token(bool(probe) and probe[0] == tok.bos_token_id and tok.bos_token_id is not None)
    w.add_add_eos_token(bool(probe) and probe[-1] == tok.eos_token_id and len(probe) > 1)
    if tok.chat_template:
        w.add_chat_template(tok.chat_template)
    _add_tensors(w, model_dir, hp, qtype)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return tok


def _add_tensors(w, model_dir: Path, hp: dict, qtype: str) -> None:
    import gguf
    from safetensors import safe_open

    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, hp["layers"])
    files = sorted(model_dir.glob("*.safetensors"))
    if not files:
        raise ExportError(f"{model_dir}: no *.safetensors weights")
    for file in files:
        with safe_open(str(file), framework="pt") as f:
            for name in f.keys():
                if name == "lm_head.weight" and hp["tied"]:
                    continue
                gname = names.get_name(name, try_suffixes=(".weight", ".bias"))
                if gname is None:
                    raise ExportError(f"GGUF export: tensor {name} has no llama GGUF name")
                data = f.get_tensor(name).float().numpy()
                if name.endswith("self_attn.q_proj.weight"):
                    data = _permute(data, hp["heads"], hp["heads"])
                elif name.endswith("self_attn.k_proj.weight"):
                    data = _permute(data, hp["heads"], hp["kv_heads"])
                data, raw = _encode(data, qtype)
                w.add_tensor(gname, data, raw_dtype=raw)


def _permute(weights, n_head: int, n_head_kv: int):
    """HF rotary layout (halves) -> ggml's (interleaved pairs), as llama.cpp's LlamaModel.permute."""
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    return (weights.reshape(n_head, 2, weights.shape[0] // n_head // 2, *weights.shape[1:])
            .swapaxes(1, 2).reshape(weights.shape))


def _encode(data, qtype: str):
    import numpy as np
    from gguf import GGMLQuantizationType as T
    from gguf.quants import quantize

    if data.ndim == 1 or qtype == "f32":
        return data.astype(np.float32), None
    if qtype == "q8_0" and data.shape[-1] % 32 == 0:
        return quantize(data, T.Q8_0), T.Q8_0
    if qtype == "bf16":
        return quantize(data, T.BF16), T.BF16
    return data.astype(np.float16), None


def byte_level_vocab(tok, vocab_size: int) -> tuple[list[str], list[int], list[str], str]:
    """(tokens, token types, merges, pre-tokenizer name) of a byte-level BPE tokenizer, padded to the model's vocab."""
    import gguf

    spec = json.loads(tok.backend_tokenizer.to_str()) if getattr(tok, "backend_tokenizer", None) else {}
    model = spec.get("model") or {}
    if model.get("type") != "BPE" or (spec.get("decoder") or {}).get("type") != "ByteLevel":
        raise ExportError("GGUF export supports byte-level BPE tokenizers (GPT-2 style) only; this one is "
                          f"{model.get('type', 'not a fast tokenizer')}")
    pre = pre_tokenizer_name(spec.get("pre_tokenizer") or {})
    merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges", [])]
    vocab = tok.get_vocab()
    if vocab and max(vocab.values()) >= vocab_size:
        raise ExportError(f"the tokenizer has ids up to {max(vocab.values())} but the model's vocabulary is {vocab_size}")
    reverse = {i: t for t, i in vocab.items()}
    added = tok.added_tokens_decoder
    tokens, types = [], []
    for i in range(vocab_size):
        if i not in reverse:
            tokens.append(f"[PAD{i}]")
            types.append(gguf.TokenType.UNUSED)
        elif i in added:
            tokens.append(added[i].content)
            special = added[i].special or added[i].content.startswith("<|") and added[i].content.endswith("|>")
            types.append(gguf.TokenType.CONTROL if special else gguf.TokenType.USER_DEFINED)
        else:
            tokens.append(reverse[i])
            types.append(gguf.TokenType.NORMAL)
    return tokens, types, merges, pre


def pre_tokenizer_name(pre: dict) -> str:
    """llama.cpp's name for a tokenizer.json pre-tokenizer (it picks the split regex llama.cpp applies)."""
    steps = pre.get("pretokenizers", []) if pre.get("type") == "Sequence" else [pre]
    kinds = [s.get("type") for s in steps]
    if kinds == ["ByteLevel"] and steps[0].get("use_regex", True):
        return "gpt-2"
    if kinds == ["Digits", "ByteLevel"] and steps[0].get("individual_digits") and steps[1].get("use_regex", True):
        return "smollm"
    if kinds == ["Split", "ByteLevel"] and (steps[0].get("pattern") or {}).get("Regex") == _LLAMA3_SPLIT:
        return "llama-bpe"
    raise ExportError(f"GGUF export: pre-tokenizer {'+'.join(map(str, kinds)) or 'none'} is not one this exporter knows "
                      f"({', '.join(PRE_TOKENIZERS)})")


# ----------------------------------------------------------------------------------------------------------------------
# Ollama Modelfile

# Ollama's Go-template form of ChatML (as in Ollama's own qwen2 templates): .System holds the system message or SYSTEM's
# default; an unfinished last assistant message is continued.
CHATML_GO_TEMPLATE = """{{- if .System }}<|im_start|>system
{{ .System }}<|im_end|>
{{ end }}
{{- range $i, $_ := .Messages }}
{{- $last := eq (len (slice $.Messages $i)) 1 }}
{{- if eq .Role "user" }}<|im_start|>user
{{ .Content }}<|im_end|>
{{ else if eq .Role "assistant" }}<|im_start|>assistant
{{ .Content }}{{ if not $last }}<|im_end|>
{{ end }}
{{- end }}
{{- if and (ne .Role "assistant") $last }}<|im_start|>assistant
{{ end }}
{{- end }}"""


def chatml_default_system(tok) -> tuple[bool, str]:
    """(is the chat template ChatML?, the system prompt it inserts when a conversation has none)."""
    s, u, a = "SYS-5e1", "USER-5e1", "ASSISTANT-5e1"
    try:
        full = tok.apply_chat_template([{"role": "system", "content": s}, {"role": "user", "content": u},
                                        {"role": "assistant", "content": a}], tokenize=False)
        bare = tok.apply_chat_template([{"role": "user", "content": u}], tokenize=False, add_generation_prompt=True)
    except Exception:  # jinja errors of every kind: a template we cannot render is not ChatML
        return False, ""
    turn = "<|im_start|>{}\n{}<|im_end|>\n"
    if full != turn.format("system", s) + turn.format("user", u) + turn.format("assistant", a):
        return False, ""
    tail = turn.format("user", u) + "<|im_start|>assistant\n"
    m = re.fullmatch(r"(?:<\|im_start\|>system\n(.*?)<\|im_end\|>\n)?" + re.escape(tail), bare, re.S)
    return (True, m.group(1) or "") if m else (False, "")


def stop_tokens(tok, model_dir: Path) -> list[str]:
    """End-of-turn tokens: the generation config's eos ids and the tokenizer's eos (plus ChatML's turn markers)."""
    gen = {}
    if (Path(model_dir) / "generation_config.json").is_file():
        gen = json.loads((Path(model_dir) / "generation_config.json").read_text(encoding="utf-8"))
    ids = gen.get("eos_token_id")
    ids = ids if isinstance(ids, list) else [ids]
    stops = [tok.convert_ids_to_tokens(i) for i in ids + [tok.eos_token_id] if isinstance(i, int)]
    if chatml_default_system(tok)[0]:
        stops += ["<|im_end|>", "<|im_start|>"]  # a new turn starting also ends the answer
    return list(dict.fromkeys(s for s in stops if s))


def modelfile(tok, gguf_name: str, model_dir: Path) -> tuple[str, list[str]]:
    """The Modelfile text and warnings (a chat template this exporter cannot translate to Go templates)."""
    lines = [f"# Ollama: ollama create my-model -f Modelfile && ollama run my-model", f"FROM ./{gguf_name}", ""]
    warnings = []
    is_chatml, system = chatml_default_system(tok)
    if is_chatml:
        lines += [f'TEMPLATE """{CHATML_GO_TEMPLATE}"""', ""]
        if system:
            lines += [f'SYSTEM """{system}"""', ""]
    elif tok.chat_template:
        warnings.append("the chat template is not ChatML: the Modelfile has no TEMPLATE (Ollama reads the GGUF's own)")
    lines += [f"PARAMETER stop {json.dumps(s)}" for s in stop_tokens(tok, model_dir)]
    return "\n".join(lines) + "\n", warnings
