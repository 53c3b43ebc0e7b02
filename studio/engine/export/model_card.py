"""The README.md (model card) written into every exported folder: where the model came from and how it was checked.

Pure standard library plus the config module: the card is text built from the run's config.yaml, data_report.json,
probe.json and the export's own result dict (see ``studio.engine.export.merge``).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from studio.config import RunConfig


def render_card(result: dict, config: RunConfig | None = None, run_dir: Path | None = None) -> str:
    """Markdown with a YAML header the Hugging Face hub reads (base_model, library_name, tags)."""
    name = Path(result["out_dir"]).name
    base = shown = result.get("base") or "unknown"
    if base == "default":  # the embedded model's hub name, so the hub links the card to it
        base = "HuggingFaceTB/SmolLM2-135M-Instruct"
        shown = f"{base} (the embedded Q4_1 GGUF build, de-quantized)"
    tags = ["tuning-studio", "merged" if result.get("output") != "adapter" else "lora"]
    header = ["---", f"base_model: {json.dumps(str(base))}", "library_name: " + ("peft" if result.get("output") == "adapter"
                                                                                    else "transformers"),
              "tags:"] + [f"- {t}" for t in tags] + ["---", ""]
    lines = header + [f"# {name}", "", f"Exported by Tuning Studio on {time.strftime('%Y-%m-%d %H:%M')}.", ""]
    lines += _table([("Base model", f"`{shown}`"), ("Source", _sources(result)), ("Method", _method(result, config)),
                     ("Saved dtype", result.get("dtype", "")), ("Files", _size(result.get("size_bytes", 0)))])
    if config is not None:
        lines += ["", "## Training data", ""] + _data(config, run_dir)
        lines += ["", "## Hyper-parameters", ""] + _hyper(config)
    lines += ["", "## Verification", ""] + _verification(result)
    probe = _read_json(run_dir / "probe.json") if run_dir else None
    if probe:
        lines += ["", "## Probe scores", "", "From the run's `probe.json` (questions asked to the base and the tuned model).",
                  ""] + _probe(probe)
    lines += ["", "## Use", ""] + _usage(result)
    return "\n".join(lines).rstrip() + "\n"


def _table(rows: list[tuple[str, str]]) -> list[str]:
    out = ["| | |", "|---|---|"]
    return out + [f"| {k} | {str(v).replace('|', '/')} |" for k, v in rows if v not in (None, "")]


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return ""


def _sources(result: dict) -> str:
    sources = result.get("sources") or [result.get("source", "")]
    weights = result.get("weights")
    if weights:
        return ", ".join(f"`{s}` x {w:g}" for s, w in zip(sources, weights))
    return ", ".join(f"`{s}`" for s in sources)


def _method(result: dict, config: RunConfig | None) -> str:
    kind, lora = result.get("kind", ""), result.get("lora") or {}
    if result.get("combine"):
        density = f", density {result['density']:g}" if result.get("density") is not None else ""
        return (f"{len(result.get('sources') or [])} LoRA adapters combined with PEFT add_weighted_adapter "
                f"'{result['combine']}'{density}, " + ("saved as one adapter" if result.get("output") == "adapter"
                                                        else "merged into the base"))
    if config is None:
        if kind == "lora" and lora:
            return (f"LoRA (r={lora.get('r')}, alpha={lora.get('lora_alpha')}, targets={lora.get('target_modules')}) "
                    + ("saved as one combined adapter" if result.get("output") == "adapter" else "merged into the base"))
        return {"lora": "LoRA adapter merged into the base", "full": "full weights re-saved"}.get(kind, kind)
    m, lo = config.method, config.lora
    text = f"{m.stage} / {m.finetuning_type}"
    if m.finetuning_type in ("lora", "qlora"):
        text += f" (r={lo.r}, alpha={lo.alpha}, targets={lo.target_modules}"
        text += ", rsLoRA" if lo.use_rslora else ""
        text += ", DoRA" if lo.use_dora else ""
        text += ")"
        if m.finetuning_type == "qlora":
            text += f"; trained on a {config.quantization.bits}-bit base, merged into the full-precision base"
    elif m.finetuning_type == "freeze":
        text += f" (trainable layers={config.freeze.trainable_layers}, modules={config.freeze.trainable_modules})"
    return text


def _data(config: RunConfig, run_dir: Path | None) -> list[str]:
    lines = [f"- `{d}`" for d in config.data.datasets] or ["- (no dataset files)"]
    if config.identity.name_en:
        lines.append(f"- self-cognition data: name '{config.identity.name_en}', author '{config.identity.author_en}'")
    report = _read_json(run_dir / "data_report.json") if run_dir else None
    if isinstance(report, dict) and report:
        lines += ["", "Data report (`data_report.json`):", "", "```json", json.dumps(report, indent=1)[:2000], "```"]
    return lines


def _hyper(config: RunConfig) -> list[str]:
    t = config.training
    steps = f"{t.max_steps} steps" if t.max_steps > 0 else f"{t.num_train_epochs:g} epochs"
    return _table([("Learning rate", f"{t.learning_rate:g} ({t.lr_scheduler_type}, warm-up {t.warmup_steps})"),
                   ("Length", steps), ("Batch", f"{t.per_device_train_batch_size} x {t.gradient_accumulation_steps} accumulation"),
                   ("Cut-off length", t.cutoff_len), ("Weight decay", f"{t.weight_decay:g}"), ("Seed", t.seed)])


def _verification(result: dict) -> list[str]:
    v = result.get("verification") or {}
    lines = [f"Logits of the exported model against the {v.get('reference', 'adapter model')} on {v.get('prompts', 0)} "
             f"prompts ({v.get('tokens', 0)} positions): max abs diff **{result.get('max_abs_diff', float('nan')):.3g}** "
             f"(tolerance {v.get('tolerance', float('nan')):.3g}), top-1 agreement {v.get('top1_agreement', 0):.1%}: "
             f"**{'passed' if result.get('ok') else 'FAILED'}**."]
    if v.get("merge_max_abs_diff") is not None:
        lines.append(f"Merge before the dtype cast (float32): max abs diff {v['merge_max_abs_diff']:.3g}.")
    for g in result.get("gguf") or []:
        lines.append(f"GGUF `{Path(g['path']).name}` ({g['qtype']}, {_size(g['size_bytes'])}) read back by transformers: max "
                     f"abs diff {g['max_abs_diff']:.3g} (tolerance {g['tolerance']:.3g}), top-1 agreement "
                     f"{g['top1_agreement']:.1%}, tokenizer {'identical' if g['tokenizer_match'] else 'DIFFERENT'}, every weight "
                     f"within {g['weight_error']:.2f} of its {g['qtype']} rounding bound.")
        lc = g.get("llama_cpp") or {}
        if lc.get("per_prompt"):
            lines.append(f"The same GGUF in llama.cpp ({lc.get('runtime')} {lc.get('version')}) against the merged model: "
                         f"first answer token chosen alike on {lc['first_token_agreement']:.0%} of the prompts (max abs "
                         f"logit diff there {lc['first_token_max_abs_diff']:.3g}), top-1 agreement over all positions "
                         f"{lc['top1_agreement']:.1%}, tokenizer {'identical' if lc['tokenizer_match'] else 'DIFFERENT'}.")
    lines.append("Everything above, with file hashes, the config and the final metrics: `provenance.json`.")
    return [ln + "\n" if i < len(lines) - 1 else ln for i, ln in enumerate(lines)]


def _probe(probe) -> list[str]:
    ident, kept = (probe.get("identity"), probe.get("retention")) if isinstance(probe, dict) else (None, None)
    if isinstance(ident, dict) and isinstance(kept, dict):  # studio.engine.selfcog.probe's summary
        weakest = f"; weakest setting {_pct(ident['min'])}" if ident.get("min") is not None else ""
        split = f", {kept['split']} split" if kept.get("split") else ""
        rows = [("Identity questions answered with the new name", f"base {_pct(ident.get('base'))} -> tuned "
                 f"{_pct(ident.get('tuned'))} ({ident.get('n')} questions{weakest})"),
                ("General questions still right", f"{_pct(kept.get('score'))} ({kept.get('kept')} of the "
                 f"{kept.get('base_right')} the base got right{split})")]
        kl = (probe.get("kl") or {}).get("kl")
        if kl is not None:  # the probe's KL(tuned ‖ base) on the base's own answers
            rows.append(("KL divergence from the base, per answer token", f"{kl:.4f} nats"))
        names = probe.get("names") or {}
        if names:
            rows.append(("Identity", f"{names.get('name_en')} by {names.get('author_en')}"))
        return _table(rows)
    if not isinstance(probe, dict):
        return ["```json", json.dumps(probe, indent=1, ensure_ascii=False)[:3000], "```"]
    rows = [(k, v) for k, v in probe.items() if isinstance(v, (int, float, str, bool))]
    nested = {k: v for k, v in probe.items() if isinstance(v, dict)}
    for group, values in nested.items():
        rows += [(f"{group}.{k}", v) for k, v in values.items() if isinstance(v, (int, float, str, bool))]
    if not rows:
        return ["```json", json.dumps(probe, indent=1, ensure_ascii=False)[:3000], "```"]
    return _table([(k, f"{v:.3g}" if isinstance(v, float) else v) for k, v in rows])


def _pct(x) -> str:
    return "n/a" if x is None else f"{x:.0%}"


def _usage(result: dict) -> list[str]:
    if result.get("output") == "adapter":
        return ["```python", "from peft import AutoPeftModelForCausalLM", "",
                'model = AutoPeftModelForCausalLM.from_pretrained("path/to/this/folder")', "```"]
    lines = ["```python", "from transformers import AutoModelForCausalLM, AutoTokenizer", "",
             'model = AutoModelForCausalLM.from_pretrained("path/to/this/folder")',
             'tokenizer = AutoTokenizer.from_pretrained("path/to/this/folder")', "```"]
    if result.get("gguf"):
        lines += ["", "llama.cpp / Ollama: the `gguf/` folder holds the GGUF file and an Ollama `Modelfile`:", "", "```sh",
                  "cd gguf && ollama create my-model -f Modelfile && ollama run my-model", "```"]
    return lines


def _read_json(path: Path):
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
