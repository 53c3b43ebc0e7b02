"""``studio export``: merge adapters into their base model and export a folder that ships (optionally GGUF + Modelfile).

    studio export --adapter runs/RUN --out exports/my-model [--dtype bfloat16] [--gguf q8_0]
    studio export --adapter runs/A --adapter runs/B --weights 0.7,0.3 --combine ties --out exports/ab
    studio export --adapter runs/A --adapter runs/B --weights 0.5,0.5 --as adapter --out exports/ab-lora

--adapter takes a run folder, a PEFT LoRA folder or a model folder (a freeze/full run's weights are re-saved and checked).
Every export is verified (logits of the saved folder vs. the adapter model); see studio/engine/export/merge.py.
Progress goes to stderr (``[ 45%] message`` lines), the summary to stdout, and the last line of stdout is the output
folder. A user error prints one line and exits 2; a failed verification exits 1. With ``--json`` the summary is one JSON
line instead: the result dict (as in export.json), or on failure ``{"ok": false, "error": ..., "exit_code": ...,
"result": <the failed check's numbers or null>}`` (the Export tab runs the command this way).
"""

from __future__ import annotations

import argparse
import json
import sys

from studio.engine.export.merge import COMBINATIONS, DTYPES


def add_parser(sub) -> None:
    p = sub.add_parser("export", help="merge adapters into their base model and export (safetensors, GGUF, Modelfile)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--adapter", action="append", required=True, metavar="DIR",
                   help="run folder, LoRA adapter folder or model folder; repeat to combine several adapters")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder: new, empty, or an earlier export (with --overwrite)")
    p.add_argument("--weights", default="", metavar="W1,W2", help="one weight per --adapter (needed with several)")
    p.add_argument("--combine", choices=COMBINATIONS, default="cat",
                   help="how to combine several adapters (PEFT add_weighted_adapter); cat = exact weighted sum")
    p.add_argument("--density", type=float, default=0.5, help="fraction of entries kept by ties/dare/magnitude_prune")
    p.add_argument("--as", dest="output", choices=("model", "adapter"), default="model",
                   help="a merged model (default) or, for a weighted merge, one combined LoRA adapter")
    p.add_argument("--dtype", choices=DTYPES, default="float32", help="dtype of the saved weights")
    p.add_argument("--gguf", default="", metavar="TYPE", help="also write GGUF + Ollama Modelfile: f16, q8_0, bf16 or f32 "
                   "(comma-separated for several); Llama-architecture models only")
    p.add_argument("--base", default="", help="base model when the adapter does not name one (or to override it)")
    p.add_argument("--max-shard-size", default="2GB", help="largest safetensors shard (default 2GB)")
    p.add_argument("--seed", type=int, default=0, help="seed for DARE's random drop")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an earlier export in --out (a folder holding the marker an export writes); any other "
                        "non-empty folder is refused")
    p.add_argument("--json", action="store_true", help="print the result (or the error) as one JSON line on stdout")
    p.set_defaults(run=run)


def run(args) -> int:
    from studio.config import ConfigError
    from studio.engine.export.merge import ExportError, VerificationError, merge_adapter, merge_adapters
    from studio.engine.models import ModelLoadError

    gguf = [q.strip() for q in args.gguf.split(",") if q.strip()]
    try:
        weights = _weights(args.weights, len(args.adapter))
        if weights is None:
            if args.output == "adapter":
                raise ExportError("--as adapter is for a weighted merge: give --weights (and usually several --adapter)")
            res = merge_adapter(args.adapter[0], args.out, args.dtype, args.overwrite, base=args.base, gguf=gguf,
                                max_shard_size=args.max_shard_size, progress=_progress)
        else:
            res = merge_adapters(args.adapter, weights, args.out, args.combine, density=args.density, output=args.output,
                                 dtype=args.dtype, overwrite=args.overwrite, base=args.base, gguf=gguf,
                                 max_shard_size=args.max_shard_size, seed=args.seed, progress=_progress)
    except VerificationError as exc:
        return _fail(exc, 1, args.json)
    except (ExportError, ModelLoadError, ConfigError) as exc:
        return _fail(exc, 2, args.json)
    for line in [json.dumps(res, ensure_ascii=False)] if args.json else summary(res):
        print(line)
    print(res["out_dir"])
    return 0


def _fail(exc: Exception, code: int, as_json: bool) -> int:
    print(f"studio export: {exc}", file=sys.stderr)
    if as_json:
        print(json.dumps({"ok": False, "error": str(exc), "exit_code": code, "result": getattr(exc, "result", None)},
                         ensure_ascii=False))
    return code


def _weights(text: str, n: int) -> list[float] | None:
    from studio.engine.export.merge import ExportError

    if not text.strip():
        if n > 1:
            raise ExportError(f"{n} adapters: give --weights with one weight each (e.g. --weights {','.join(['0.5'] * n)})")
        return None
    try:
        weights = [float(w) for w in text.split(",")]
    except ValueError:
        raise ExportError(f"--weights {text!r}: expected comma-separated numbers, e.g. 0.7,0.3") from None
    if len(weights) != n:
        raise ExportError(f"--weights has {len(weights)} weight(s) for {n} adapter(s): give one weight per --adapter")
    return weights


def _progress(fraction: float, message: str) -> None:
    print(f"[{fraction:4.0%}] {message}", file=sys.stderr, flush=True)


def summary(res: dict) -> list[str]:
    v = res["verification"]
    lines = [f"exported: {res['kind']} from {', '.join(res['sources'])} (base {res['base'] or 'n/a'}) as {res['output']}, "
             f"{res['dtype']}",
             f"check: max abs logit diff {res['max_abs_diff']:.3g} vs the {v['reference']} (tolerance {res['tolerance']:.3g}),"
             f" top-1 agreement {res['top1_agreement']:.1%}: {'passed' if res['ok'] else 'FAILED'}"]
    for g in res.get("gguf") or []:
        lines.append(f"gguf {g['qtype']}: {g['path']} ({g['size_bytes'] / 2**20:.1f} MB), max abs diff {g['max_abs_diff']:.3g}"
                     f" (tolerance {g['tolerance']:.3g}), top-1 {g['top1_agreement']:.1%}, tokenizer "
                     f"{'identical' if g['tokenizer_match'] else 'DIFFERENT'}")
        lines += [f"warning: {w}" for w in g.get("warnings", [])]
    lines.append(f"size: {res['size_bytes'] / 2**20:.1f} MB, {res['seconds']:.1f} s")
    return lines
