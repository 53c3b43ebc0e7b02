"""Every GGUF of an export, run in llama.cpp (llama-cpp-python) and compared with the export's merged model.

    studio export --adapter RUN --out exports/check --gguf f16,q8_0
    python benchmarks/gguf_llama_cpp.py exports/check            # one line per GGUF, then one per check prompt

On the export's four check prompts (``studio/engine/export/verify.py``, through the chat template) llama.cpp evaluates
the same token ids as the merged model (transformers, float32); printed: max |logit diff| and top-1 agreement over every
position, the first answer token (the last prompt position: |diff| and same argmax), whether llama.cpp's tokenizer gives
the same ids, and a few greedy tokens llama.cpp generated. Needs ``pip install llama-cpp-python``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("export", type=Path, help="a `studio export` folder with gguf/*.gguf")
    p.add_argument("--json", action="store_true", help="print the results as one JSON line too")
    args = p.parse_args()
    from studio.engine.export import llama_cpp
    from studio.engine.export.verify import PROMPTS

    if not llama_cpp.available():
        print(llama_cpp.INSTALL_HINT, file=sys.stderr)
        return 2
    files = sorted((args.export / "gguf").glob("*.gguf"))
    if not files:
        print(f"{args.export}: no gguf/*.gguf (export with --gguf f16,q8_0)", file=sys.stderr)
        return 2
    results = {}
    print(f"llama-cpp-python {llama_cpp.version()} vs the merged model in {args.export}")
    for path in files:
        r = llama_cpp.check_export(path, args.export)
        results[path.name] = r
        print(f"{path.name}: max |logit diff| {r['max_abs_diff']:.4f}, top-1 agreement {r['top1_agreement']:.1%} "
              f"over all positions; first answer token: same on {r['first_token_agreement']:.0%} of the prompts, "
              f"max |diff| {r['first_token_max_abs_diff']:.4f}; tokenizer {'identical' if r['tokenizer_match'] else 'DIFFERENT'}; "
              f"greedy: {r['generated']['text']!r} ({r['seconds']} s)")
        for prompt, row in zip(PROMPTS, r["per_prompt"]):
            print(f"    {prompt[:40]!r:44} tokens {row['tokens']:3d}  max diff {row['max_abs_diff']:.4f}  top-1 "
                  f"{row['top1_agreement']:.1%}  first token diff {row['first_token_abs_diff']:.4f} "
                  f"{'same' if row['first_token_same'] else 'DIFFERENT'}")
    if args.json:
        print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
