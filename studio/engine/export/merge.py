"""Merge a run's adapter into its base model (or combine several adapters) and save a folder that ships.

    from studio.engine.export.merge import merge_adapter, merge_adapters
    merge_adapter("runs/20250101-120000-demo", "exports/demo", dtype="bfloat16", gguf=("q8_0",))
    merge_adapters(["runs/a", "runs/b"], [0.7, 0.3], "exports/ab", combine="ties", density=0.5)

CLI: ``studio export --adapter DIR [--adapter DIR2 --weights 0.7,0.3 --combine ties] --out DIR [--gguf q8_0]``.

A source is a run folder (its ``adapter/`` or, for freeze/full runs, its ``model/``), a PEFT LoRA folder, or a model folder.
The output is a plain Hugging Face folder: sharded safetensors, tokenizer with its chat template, generation config,
README.md (model card) and export.json (this module's result dict); with ``gguf=`` also ``gguf/model-<type>.gguf`` and an
Ollama ``Modelfile`` (see ``studio.engine.export.gguf``).

Every export is checked before it is kept: the logits of the folder as written, loaded back from disk, must equal the
logits of the model it came from (base + adapter, computed in float32, unmerged) on a few chat prompts, within a
tolerance set by the saved dtype. A mismatch raises ``VerificationError`` and leaves nothing behind. The work happens in
a hidden sibling folder that replaces the output only at the end, so a failed or killed export never half-overwrites one.
Every export writes a ``.studio-export`` marker file; an export replaces only a folder holding one (and only with
``overwrite``): any other non-empty folder is refused by name, whatever ``overwrite`` says.
Weights are read from safetensors only; no user-given path is ever unpickled.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from studio.engine import rundir
from studio.engine.export.verify import (PROMPTS, ExportError, Progress, ProgressFn, VerificationError,  # noqa: F401
                                        compare_logits, judge, logits, verification_inputs)

DTYPES = ("float32", "bfloat16", "float16")
# PEFT's add_weighted_adapter methods. cat: the exact weighted sum of the adapters' updates (ranks add up); linear and
# ties/dare/magnitude_prune combine the A and B factors separately (same rank needed); *_svd: on the full update, then SVD.
COMBINATIONS = ("cat", "linear", "svd", "ties", "ties_svd", "dare_linear", "dare_ties", "dare_linear_svd", "dare_ties_svd",
                "magnitude_prune", "magnitude_prune_svd")
NEEDS_DENSITY = tuple(c for c in COMBINATIONS if c.startswith(("ties", "dare", "magnitude")))
# Largest |logit difference| accepted, relative to the largest |logit| of the reference (floor 1). float32 leaves only
# summation-order noise (measured 3.6e-6 on the default model); half dtypes round every weight (fp16 keeps 11 mantissa
# bits, bf16 8: measured 1.2e-3 and 8.9e-3 there).
TOLERANCE = {"float32": 1e-4, "float16": 1e-2, "bfloat16": 5e-2}
MARKER = ".studio-export"  # written into every finished export: the only kind of folder an export may replace


@dataclass
class Source:
    path: Path                  # the adapter folder (kind 'lora') or the model folder (kind 'full')
    kind: str                   # 'lora' or 'full'
    base: str = ""              # the base model as named: 'default', a folder, a hub id ('' for a full model)
    run_dir: Path | None = None
    config: object | None = None  # the run's RunConfig when the source lives in a run folder


def find_source(path: str | os.PathLike, base: str = "") -> Source:
    """What ``path`` is: a run folder, an adapter folder (maybe inside a run) or a model folder; ExportError otherwise."""
    p = Path(path).expanduser()
    if not p.is_dir():
        raise ExportError(f"{p}: {'not a folder' if p.exists() else 'no such folder'}")
    if (p / rundir.CONFIG).is_file() and not (p / "adapter_config.json").is_file():
        sub = next((p / s for s in (rundir.ADAPTER, rundir.MODEL) if (p / s).is_dir()), None)
        if sub is None:
            raise ExportError(f"{p}: this run has no {rundir.ADAPTER}/ or {rundir.MODEL}/ folder (did it finish?)")
        p = sub
    run_dir = _run_dir_of(p)
    config = _run_config(run_dir)
    run_base = config.model.name_or_path if config is not None else ""
    if (p / "adapter_config.json").is_file():
        acfg = _read_json(p / "adapter_config.json")
        if acfg.get("peft_type") != "LORA":
            raise ExportError(f"{p}: a {acfg.get('peft_type')} adapter; only LoRA adapters can be merged")
        if not (p / "adapter_model.safetensors").is_file():
            raise ExportError(f"{p}: no adapter_model.safetensors (weights are only read from safetensors, never pickles)")
        name = base or run_base or acfg.get("base_model_name_or_path") or ""
        if not name:
            raise ExportError(f"{p}: adapter_config.json names no base model; give it with --base")
        return Source(p, "lora", name, run_dir, config)
    if (p / "config.json").is_file():
        if not any(p.glob("*.safetensors")):
            raise ExportError(f"{p}: no *.safetensors weights (weights are only read from safetensors, never pickles)")
        return Source(p, "full", base or run_base, run_dir, config)
    raise ExportError(f"{p}: not a run folder, a LoRA adapter folder or a model folder "
                      "(no config.yaml, adapter_config.json or config.json)")


def _run_dir_of(p: Path) -> Path | None:
    candidates = [p, p.parent] + ([p.parent.parent] if p.parent.name == rundir.CHECKPOINTS else [])
    return next((d for d in candidates if (d / rundir.CONFIG).is_file()), None)


def _run_config(run_dir: Path | None):
    if run_dir is None:
        return None
    from studio import config as cfgmod

    try:
        return cfgmod.load(run_dir / rundir.CONFIG)
    except cfgmod.ConfigError:
        return None  # a config.yaml that is not ours: the adapter's own metadata still names the base


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ExportError(f"{path}: cannot read it ({exc})") from None


# ----------------------------------------------------------------------------------------------------------------------
# Public entry points


def merge_adapter(adapter_dir, out_dir, dtype: str = "float32", overwrite: bool = False, *, base: str = "",
                  gguf: Sequence[str] = (), max_shard_size: str | int = "2GB", progress: ProgressFn | None = None) -> dict:
    """Merge one adapter (or re-save one full model) into ``out_dir``; verified, see the module docstring.

    Returns a dict: out_dir, size_bytes, max_abs_diff, ok, tolerance, top1_agreement, dtype, kind, base, sources,
    seconds, verification {...}, gguf [one dict per GGUF file, see gguf_export.export_gguf].
    """
    _check_options(dtype, gguf)
    report = Progress(progress)
    src = find_source(adapter_dir, base)
    out, tmp = _staging(out_dir, overwrite, [src.path, _resolve(src.base)])
    start = time.time()
    try:
        report(0.02, f"loading the tokenizer and the {'base model + adapter' if src.kind == 'lora' else 'model'}")
        tok = _load_tokenizer(src)
        texts, inputs = verification_inputs(tok)
        merge_diff = None
        if src.kind == "lora":
            model = _load_peft(src.base, [src.path], _trust(src))
            report(0.25, "computing the adapter model's logits")
            ref = logits(model, inputs)
            report(0.35, "merging the adapter into the base weights")
            model = model.merge_and_unload(safe_merge=True)
            merge_diff = compare_logits(ref, logits(model, inputs))["max_abs_diff"]
        else:
            model = _load_model(src.path, _trust(src))
            report(0.25, "computing the trained model's logits")
            ref = logits(model, inputs)
        report(0.45, f"saving {dtype} safetensors")
        _save_model(model, tok, tmp, dtype, max_shard_size)
        del model
        report(0.6, "loading the saved folder back and comparing logits")
        result = _verify_model(tmp, ref, inputs, dtype, merge_diff,
                               "adapter model (base + LoRA, unmerged, float32)" if src.kind == "lora" else "trained model")
        result.update(kind=src.kind, base=src.base, sources=[str(src.path)], output="model", lora=_lora_info(src))
        _finish(result, out, tmp, src.config, src.run_dir, texts, inputs, gguf, report, start)
        return result
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def merge_adapters(adapter_dirs: Sequence, weights: Sequence[float], out_dir, combine: str = "cat", *,
                   density: float = 0.5, output: str = "model", dtype: str = "float32", overwrite: bool = False,
                   base: str = "", gguf: Sequence[str] = (), max_shard_size: str | int = "2GB", seed: int = 0,
                   progress: ProgressFn | None = None) -> dict:
    """Combine LoRA adapters of one base with PEFT's ``add_weighted_adapter`` and save one adapter or one merged model.

    ``combine`` is one of COMBINATIONS; ``density`` (fraction kept) is used by ties/dare/magnitude_prune; ``seed`` makes
    DARE's random drop repeatable. Weights (1, 0, ...) reproduce the first adapter with cat, linear and svd; TIES and
    DARE elect signs / drop entries using every adapter, so they do not. ``output='adapter'`` writes a PEFT folder
    (float32). Returns the same dict as merge_adapter, plus weights and combine.
    """
    _check_options(dtype, gguf)
    if combine not in COMBINATIONS:
        raise ExportError(f"combine={combine!r}: must be one of {', '.join(COMBINATIONS)}")
    if output not in ("model", "adapter"):
        raise ExportError(f"output={output!r}: must be 'model' or 'adapter'")
    if output == "adapter" and gguf:
        raise ExportError("GGUF needs a merged model: use output='model' (drop --as adapter) to export GGUF")
    if not adapter_dirs or len(weights) != len(adapter_dirs):
        raise ExportError(f"{len(adapter_dirs)} adapter(s) but {len(weights)} weight(s): give one weight per adapter")
    if combine in NEEDS_DENSITY and not 0 < density <= 1:
        raise ExportError(f"density={density}: must be in (0, 1] (the fraction of entries kept)")
    report = Progress(progress)
    sources = [find_source(d, base) for d in adapter_dirs]
    base_path = _common_base(sources)
    out, tmp = _staging(out_dir, overwrite, [s.path for s in sources] + [base_path])
    start = time.time()
    try:
        report(0.02, f"loading the base model and {len(sources)} adapters")
        tok = _load_tokenizer(sources[0])
        texts, inputs = verification_inputs(tok)
        model = _combine(base_path, sources, [float(w) for w in weights], combine, density, seed, _trust(sources[0]))
        report(0.3, "computing the combined adapter's logits")
        ref = logits(model, inputs)
        if output == "adapter":
            report(0.45, "saving the combined adapter")
            model.save_pretrained(tmp)
            tok.save_pretrained(tmp)
            del model
            acfg = _read_json(tmp / "adapter_config.json")  # name the base so AutoPeftModel finds it ('default' it cannot)
            acfg["base_model_name_or_path"] = base_path
            (tmp / "adapter_config.json").write_text(json.dumps(acfg, indent=2), encoding="utf-8")
            report(0.6, "loading the saved adapter back and comparing logits")
            result = _verify_adapter(tmp, base_path, ref, inputs, _trust(sources[0]))
        else:
            report(0.35, "merging the combined adapter into the base weights")
            model = model.merge_and_unload(safe_merge=True)
            merge_diff = compare_logits(ref, logits(model, inputs))["max_abs_diff"]
            report(0.45, f"saving {dtype} safetensors")
            _save_model(model, tok, tmp, dtype, max_shard_size)
            del model
            report(0.6, "loading the saved folder back and comparing logits")
            result = _verify_model(tmp, ref, inputs, dtype, merge_diff, "combined adapter model (unmerged, float32)")
        result.update(kind="lora", base=sources[0].base, sources=[str(s.path) for s in sources], output=output,
                      weights=[float(w) for w in weights], combine=combine if len(sources) > 1 else "linear",
                      density=density if combine in NEEDS_DENSITY else None)
        # the card describes the combination, not one source run's training
        _finish(result, out, tmp, None, None, texts, inputs, gguf, report, start)
        return result
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# ----------------------------------------------------------------------------------------------------------------------
# Checking what was saved


def _verify_model(folder: Path, ref: list, inputs: list, dtype: str, merge_diff: float | None, reference: str) -> dict:
    import torch
    from transformers import AutoModelForCausalLM

    saved = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32, use_safetensors=True)
    got = logits(saved, inputs)
    del saved
    result = judge(compare_logits(ref, got), TOLERANCE[dtype], reference, len(inputs))
    if merge_diff is not None:
        merge_tol = TOLERANCE["float32"] * max(1.0, result["verification"]["logit_scale"])
        result["verification"]["merge_max_abs_diff"] = merge_diff
        result["ok"] = result["ok"] and merge_diff <= merge_tol
    result.update(dtype=dtype, saved_logits=got)
    return result


def _verify_adapter(folder: Path, base_path: str, ref: list, inputs: list, trust: bool) -> dict:
    model = _load_peft(base_path, [folder], trust)
    got = logits(model, inputs)
    result = judge(compare_logits(ref, got), TOLERANCE["float32"], "combined adapter before saving", len(inputs))
    result.update(dtype="float32")
    return result


# ----------------------------------------------------------------------------------------------------------------------
# Loading, combining, saving


def _lora_info(src: Source) -> dict | None:
    if src.kind != "lora":
        return None
    cfg = _read_json(src.path / "adapter_config.json")
    targets = cfg.get("target_modules")
    targets = ",".join(sorted(targets)) if isinstance(targets, list) else targets
    return {"r": cfg.get("r"), "lora_alpha": cfg.get("lora_alpha"), "target_modules": targets,
            "use_dora": bool(cfg.get("use_dora")), "use_rslora": bool(cfg.get("use_rslora"))}


def _trust(src: Source) -> bool:
    return bool(src.config is not None and src.config.model.trust_remote_code)


def _load_tokenizer(src: Source):
    """The tokenizer saved next to the weights (what training used), else the base's with the run's template override."""
    from transformers import AutoTokenizer

    from studio.engine.models import ModelLoadError, resolve_model

    if (src.path / "tokenizer_config.json").is_file():
        return AutoTokenizer.from_pretrained(src.path)
    if not src.base:
        raise ExportError(f"{src.path}: no tokenizer in this folder and no base model to take it from (give --base)")
    try:
        tok = AutoTokenizer.from_pretrained(resolve_model(src.base), trust_remote_code=_trust(src))
    except Exception as exc:  # OSError / ValueError / hub errors all mean: cannot load it
        raise ModelLoadError(f"cannot load the tokenizer of '{src.base}': {str(exc).splitlines()[0][:300]}") from exc
    override = src.config.model.chat_template if src.config is not None else ""
    if override:
        tpl = Path(override)
        tok.chat_template = tpl.read_text(encoding="utf-8") if tpl.suffix == ".jinja" and tpl.is_file() else override
    return tok


def _load_model(path: str | Path, trust: bool = False):
    from studio.engine.models import load_causal_lm

    return load_causal_lm(str(path), dtype="float32", trust_remote_code=trust, use_safetensors=True)


def _load_peft(base: str, adapters: list[Path], trust: bool, names: list[str] | None = None):
    """float32 base + adapters (the first active); merging in float32 keeps the merge itself exact."""
    from peft import PeftModel

    names = names or ["default"] * len(adapters)
    model = _load_model(base, trust)
    for i, (path, name) in enumerate(zip(adapters, names)):
        try:
            if i == 0:
                model = PeftModel.from_pretrained(model, str(path), adapter_name=name)
            else:
                model.load_adapter(str(path), adapter_name=name)
        except (ValueError, KeyError, RuntimeError) as exc:  # wrong base: missing modules, shape mismatches
            raise ExportError(f"cannot load the adapter {path} onto {base}: {str(exc).strip().splitlines()[0][:300]}") from exc
    return model


def _common_base(sources: list[Source]) -> str:
    for s in sources:
        if s.kind != "lora":
            raise ExportError(f"{s.path}: holds full weights, not a LoRA adapter; a weighted merge combines LoRA adapters")
    paths = [_resolve(s.base) for s in sources]
    for s, p in zip(sources[1:], paths[1:]):
        if p != paths[0]:
            raise ExportError(f"adapters of different base models: {sources[0].path} ({sources[0].base}) and "
                              f"{s.path} ({s.base})")
    return paths[0]


def _resolve(base: str) -> str:
    """A base model name as a comparable string: an absolute folder path, else the hub id."""
    from studio.engine.models import resolve_model

    if not base:
        return ""
    path = resolve_model(base)
    return str(Path(path).resolve()) if Path(path).is_dir() else path


def _combine(base_path: str, sources: list[Source], weights: list[float], combine: str, density: float, seed: int,
             trust: bool):
    """A PeftModel whose only adapter, 'default', is the weighted combination of the sources."""
    import torch

    for s in sources:
        if _read_json(s.path / "adapter_config.json").get("use_dora"):
            raise ExportError(f"{s.path}: a DoRA adapter; PEFT's weighted merge cannot combine DoRA magnitudes "
                              "(merge it alone instead)")
    names = [f"source{i}" for i in range(len(sources))]
    model = _load_peft(base_path, [s.path for s in sources], trust, names)
    # add_weighted_adapter folds every source's scaling into the new A/B and gives the result lora_alpha = r (scale 1),
    # but copies use_rslora from the first source, which makes the scale sqrt(r) (peft#3449, not in peft 0.21). The
    # sources' layers already hold their own scaling, so clearing the flag on the config that gets copied is enough.
    model.peft_config[names[0]].use_rslora = False
    torch.manual_seed(seed)  # DARE drops entries at random
    try:
        model.add_weighted_adapter(names, weights, "default", combination_type=combine,
                                   density=density if combine in NEEDS_DENSITY else None)
    except (ValueError, TypeError, NotImplementedError, RuntimeError) as exc:
        raise ExportError(f"cannot combine these adapters with '{combine}': {str(exc).splitlines()[0]}") from exc
    model.set_adapter("default")
    for name in names:
        model.delete_adapter(name)
    return model


def _save_model(model, tok, folder: Path, dtype: str, max_shard_size) -> None:
    import torch

    model = model.to(getattr(torch, dtype))
    gen = model.generation_config
    eos = gen.eos_token_id if isinstance(gen.eos_token_id, list) else [gen.eos_token_id]
    if tok.eos_token_id is not None and tok.eos_token_id not in eos:  # the chat template's end of turn must stop generation
        gen.eos_token_id = [e for e in eos if e is not None] + [tok.eos_token_id]
    model.save_pretrained(folder, max_shard_size=max_shard_size)
    tok.save_pretrained(folder)


# ----------------------------------------------------------------------------------------------------------------------
# Output folder


def _check_options(dtype: str, gguf: Sequence[str]) -> None:
    from studio.engine.export.gguf import QTYPES

    if dtype not in DTYPES:
        raise ExportError(f"dtype={dtype!r}: must be one of {', '.join(DTYPES)}")
    for q in gguf:
        if q not in QTYPES:
            raise ExportError(f"gguf={q!r}: must be one of {', '.join(QTYPES)}")


def check_output_folder(out_dir, overwrite: bool) -> Path:
    """The resolved output folder, or ExportError when an export may not write there.

    An export only ever replaces a folder an earlier export made (it holds the ``MARKER`` file ``_finish`` writes), and
    only with ``overwrite``. A non-empty folder without the marker (``~/.ssh``, ``~/Documents``, ``$STUDIO_HOME/runs``,
    a dataset folder...) is refused whatever ``overwrite`` says: nothing the user made is deleted by an export.
    """
    if not str(out_dir or "").strip():
        raise ExportError("no output folder given (--out)")
    out = Path(out_dir).expanduser().resolve()
    if out.exists() and not out.is_dir():
        raise ExportError(f"{out}: exists and is not a folder")
    if not out.is_dir() or not any(out.iterdir()):
        return out
    if not is_export(out):
        older = " (it has an export.json from an older version: delete it yourself if you want it gone)" \
            if (out / "export.json").is_file() else ""
        raise ExportError(f"{out}: folder exists, is not empty and was not made by a studio export (no {MARKER} file)"
                          f"{older}; an export never replaces it, whatever --overwrite says: choose a new or empty folder")
    if not overwrite:
        raise ExportError(f"{out}: folder exists and is not empty (an earlier export: pass --overwrite to replace it)")
    return out


def is_export(folder: Path) -> bool:
    """True when ``folder`` holds the marker a finished export writes (a plain file, not a link to one)."""
    marker = Path(folder) / MARKER
    return marker.is_file() and not marker.is_symlink()


def _staging(out_dir, overwrite: bool, protect: list) -> tuple[Path, Path]:
    """Check the output folder and return (out, hidden work folder beside it)."""
    from studio.paths import studio_home

    if not str(out_dir or "").strip():
        raise ExportError("no output folder given (--out)")
    out = Path(out_dir).expanduser().resolve()
    keep = [Path(p).expanduser().resolve() for p in protect if p and Path(p).expanduser().exists()]
    keep += [Path.home().resolve(), Path.cwd().resolve(), studio_home().resolve()]
    for p in keep:
        if p == out or out in p.parents:
            raise ExportError(f"{out}: replacing this folder would delete {p}; choose another output folder")
    check_output_folder(out, overwrite)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.export-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    return out, tmp


def _replace_output(tmp: Path, out: Path) -> None:
    """Make the finished work folder ``out``. An old export there is moved aside first and deleted only once the new one
    is in place; the marker is checked again here, so a folder that appeared since the start is never deleted."""
    old = None
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        if not is_export(out):
            raise ExportError(f"{out}: a folder without the {MARKER} file appeared there during the export; "
                              "it was left as it is and nothing was written (choose another folder)")
        old = out.parent / f".{out.name}.replaced-{os.getpid()}"
        os.replace(out, old)
    elif out.is_dir():
        out.rmdir()  # empty: os.replace of a folder onto an empty folder is allowed on POSIX, not on Windows
    try:
        os.replace(tmp, out)
    except OSError:
        if old is not None:
            os.replace(old, out)  # the old export goes back where it was
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _finish(result: dict, out: Path, tmp: Path, config, run_dir, texts, inputs, gguf, report, start: float) -> None:
    """GGUF files, the check's verdict, model card, export.json, then the work folder becomes ``out``."""
    from studio.engine.export.model_card import render_card

    saved_logits = result.pop("saved_logits", None)
    if not result["ok"]:
        v = result["verification"]
        raise VerificationError(f"verification failed: logits differ from the {v['reference']} by {result['max_abs_diff']:.3g} "
                                f"(tolerance {result['tolerance']:.3g}; merge alone {v.get('merge_max_abs_diff')})", result)
    from studio.engine.export.gguf import export_gguf

    result["gguf"] = []
    for i, qtype in enumerate(gguf):
        lo = 0.7 + 0.25 * i / len(gguf)
        g = export_gguf(tmp, qtype, overwrite=True, name=out.name, reference=(texts, inputs, saved_logits),
                        progress=report.sub(lo, lo + 0.25 / len(gguf)))
        g["llama_cpp"] = _llama_cpp_check(Path(g["path"]), texts, inputs, saved_logits)
        for key in ("path", "modelfile"):  # where they will be once the work folder becomes ``out``
            g[key] = str(out / Path(g[key]).relative_to(tmp))
        result["gguf"].append(g)
    report(0.97, "writing the model card and provenance.json")
    result["out_dir"] = str(out)
    result["seconds"] = round(time.time() - start, 1)
    result["size_bytes"] = folder_size(tmp)
    (tmp / "README.md").write_text(render_card(result, config, run_dir), encoding="utf-8")
    (tmp / "export.json").write_text(json.dumps(result, indent=2, ensure_ascii=False), encoding="utf-8")
    from studio.engine.export import provenance

    provenance.write(tmp, provenance.build(result, config, run_dir))
    (tmp / MARKER).write_text(json.dumps({"made_by": "studio export", "time": time.time()}) + "\n", encoding="utf-8")
    result["size_bytes"] = folder_size(tmp)
    _replace_output(tmp, out)
    report(1.0, f"done: {out}")


def _llama_cpp_check(path: Path, texts, inputs, merged_logits) -> dict:
    """llama.cpp's logits for the file against the merged model's (recorded, not a gate: see export/llama_cpp.py)."""
    from studio.engine.export import llama_cpp

    if not llama_cpp.available():
        return {"skipped": llama_cpp.INSTALL_HINT}
    if merged_logits is None:
        return {"skipped": "no merged-model logits at hand (an adapter export)"}
    try:
        return llama_cpp.check_gguf(path, texts, inputs, merged_logits)
    except Exception as exc:  # a llama.cpp that cannot load the file is a finding to record, not a crash of the export
        return {"error": f"{type(exc).__name__}: {exc}"[:500]}


def folder_size(path: Path) -> int:
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())
