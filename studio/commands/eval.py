"""``studio eval``: predict a dataset with a base or tuned model, score it, compare base and tuned, run lm-eval benchmarks.

    studio eval --adapter runs/RUN --split val --metrics em,f1,rougeL,bleu,ppl --compare       # -> runs/RUN/eval/val/
    studio eval --model default --data data/qa.jsonl@200 --metrics f1,bleu --out evals/qa
    studio eval --adapter runs/RUN --data test.jsonl --custom-metric metrics.py:triple_f1 --compare --out evals/t
    studio eval --adapter runs/RUN --lm-eval arc_easy --lm-eval-limit 50 --compare --out evals/bench   # needs lm-eval

Progress goes to stderr; stdout gets a readable table and, as its LAST line, the metrics table as JSON:
``{"f1": {"base": 0.41, "tuned": 0.63, "delta": 0.22}, ...}`` (only the sides evaluated; lm-eval rows are keyed
``lm_eval:TASK/METRIC``). Rerunning into the same --out resumes: rows already in predictions.jsonl are not generated
again. A user error prints one line and exits 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def add_parser(sub) -> None:
    p = sub.add_parser("eval", help="predict a dataset, score it (em/f1/rougeL/bleu/ppl/custom), compare base and tuned",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="default", help="base model: 'default', a local folder or a hub id")
    p.add_argument("--adapter", default="", help="tuned model: a run folder, a LoRA adapter folder or a merged folder")
    p.add_argument("--data", default="", metavar="SPEC", help="dataset PATH[#NAME][@MAX] (alpaca, sharegpt, messages, ...)")
    p.add_argument("--split", default="", choices=("all", "val"),
                   help="all: every row of --data; val: the run's held-out rows (data.val_size). Default: val when "
                        "--adapter is a run and no --data is given, else all")
    p.add_argument("--metrics", default="em,f1,rougeL,bleu", help="comma-separated: em, f1, rougeL, bleu, ppl")
    p.add_argument("--custom-metric", action="append", default=[], metavar="FILE.py:FUNCTION",
                   help="your own metric: fn(prediction, reference) -> float per row, or fn(predictions, references) "
                        "-> float for the corpus (repeatable)")
    p.add_argument("--compare", action="store_true", help="evaluate the base and the tuned model (before/after table)")
    p.add_argument("--system", default="", help="system prompt for rows that have none")
    p.add_argument("--max-new-tokens", type=int, default=128)
    p.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default)")
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--repetition-penalty", type=float, default=1.0)
    p.add_argument("--batch-size", type=int, default=8, help="rows generated (and scored for ppl) together")
    p.add_argument("--out", default="", metavar="DIR",
                   help="output folder (default with a run as --adapter: RUN/eval/val or RUN/eval/<dataset name>)")
    p.add_argument("--overwrite", action="store_true", help="discard the predictions already in --out")
    p.add_argument("--lm-eval", default="", metavar="TASKS", help="also run lm-evaluation-harness tasks (comma-separated)")
    p.add_argument("--lm-eval-limit", type=float, default=None, help="rows per task (int) or fraction")
    p.add_argument("--lm-eval-fewshot", type=int, default=None)
    p.add_argument("--lm-eval-include", default="", metavar="DIR", help="folder of local lm-eval task YAMLs")
    p.set_defaults(run=run)


def request_from_args(args):
    from studio.engine.evaluate.predict import EvalRequest, GenSettings, resolve_run_dir

    split = args.split or ("val" if not args.data and resolve_run_dir(args.adapter) else "all")
    gen = GenSettings(max_new_tokens=args.max_new_tokens, temperature=args.temperature, top_p=args.top_p,
                      repetition_penalty=args.repetition_penalty, batch_size=args.batch_size)
    return EvalRequest(model=args.model, adapter=args.adapter, data=args.data, split=split, metrics=args.metrics,
                       custom_metrics=list(args.custom_metric), compare=args.compare, system=args.system, gen=gen)


def out_dir_of(args, split: str) -> Path:
    from studio.engine.evaluate.predict import EvalError, default_out_dir

    if args.out:
        return Path(args.out).expanduser()
    out = default_out_dir(args.adapter, args.data, split)
    if out is None:
        raise EvalError("give --out DIR (only a run folder as --adapter has a default: RUN/eval/<val or dataset name>)")
    return out


def run(args) -> int:
    from studio.engine.models import skip_bitsandbytes

    skip_bitsandbytes()  # evaluation never quantizes; saves the bitsandbytes import
    from studio.engine.evaluate import predict as E
    from studio.engine.evaluate import lm_harness
    from studio.engine.data.load import DataError
    from studio.engine.evaluate.scores import MetricError
    from studio.engine.models import ModelLoadError

    user_errors = (E.EvalError, DataError, MetricError, ModelLoadError, lm_harness.LmEvalMissing, lm_harness.LmEvalError,
                   FileNotFoundError)
    try:
        req = request_from_args(args)
        out = out_dir_of(args, req.split)
        table: dict = {}
        if args.data or args.split or not args.lm_eval:
            result = E.evaluate(req, out, progress=_progress, overwrite=args.overwrite)
            table.update(result["table"])
            _print_changed(result.get("changed_most") or [])
        if args.lm_eval:
            table.update(_lm_eval(args, out))
    except user_errors as exc:
        print(f"studio eval: {exc}", file=sys.stderr)
        return 2
    print(f"results: {out}", file=sys.stderr)
    for line in format_table(table):
        print(line)
    print(json.dumps(table, ensure_ascii=False))
    return 0


def _lm_eval(args, out: Path) -> dict:
    from studio.engine.evaluate import lm_harness
    from studio.engine.evaluate.predict import RESULTS, Progress, read_results
    from studio.engine.rundir import atomic_write_text

    kw = dict(limit=args.lm_eval_limit, batch_size=args.batch_size, num_fewshot=args.lm_eval_fewshot,
              include_path=args.lm_eval_include)
    tasks = lm_harness.parse_tasks(args.lm_eval)
    print(f"lm-eval: {', '.join(tasks)}", file=sys.stderr, flush=True)
    out.mkdir(parents=True, exist_ok=True)
    prog = Progress(out, None)  # the UI follows progress.json, for benchmarks too
    prog.write({"state": "running", "phase": "lm-eval", "done": 0, "total": prog_total(args, tasks)})
    try:
        if args.compare:
            rows = lm_harness.compare(args.model, args.adapter, tasks, **kw)
        else:
            side = "tuned" if args.adapter else "base"
            rows = [dict(r, **{side: r["value"]}) for r in lm_harness.run(args.model, tasks, args.adapter, **kw)]
    except BaseException as exc:
        prog.write({"state": "failed", "phase": "lm-eval", "error": f"{type(exc).__name__}: {exc}"[:2000]})
        raise
    results = read_results(out) or {}
    results["lm_eval"] = rows
    atomic_write_text(out / RESULTS, json.dumps(results, indent=2, ensure_ascii=False))
    prog.write({"state": "finished", "phase": "done", "done": prog_total(args, tasks), "total": prog_total(args, tasks)})
    return {f"lm_eval:{r['task']}/{r['metric']}": {k: r[k] for k in ("base", "tuned", "delta") if k in r} for r in rows}


def prog_total(args, tasks: list[str]) -> int:
    return len(tasks) * (2 if args.compare else 1)


def _progress(info: dict) -> None:
    total = info.get("total") or 0
    pct = f" ({100 * info['done'] / total:.0f}%)" if total else ""
    rate = f", {info['rows_per_s']:.2f} rows/s" if info.get("rows_per_s") else ""
    eta = f", ETA {int(info['eta']) // 60}:{int(info['eta']) % 60:02d}" if info.get("eta") is not None else ""
    side = f" {info['side']}" if info.get("side") else ""
    print(f"[{info.get('phase')}{side}] {info.get('done')}/{total}{pct}{rate}{eta}", file=sys.stderr, flush=True)


def format_table(table: dict) -> list[str]:
    sides = [s for s in ("base", "tuned", "delta") if any(s in v for v in table.values())]
    width = max([len(k) for k in table] + [6])
    lines = [f"{'metric':<{width}}  " + "  ".join(f"{s:>10}" for s in sides)]
    for name, vals in table.items():
        cells = ["–" if vals.get(s) is None else f"{vals[s]:+.4f}" if s == "delta" else f"{vals[s]:.4f}" for s in sides]
        lines.append(f"{name:<{width}}  " + "  ".join(f"{c:>10}" for c in cells))
    return lines


def _print_changed(rows: list[dict], k: int = 5) -> None:
    for r in rows[:k]:
        print(f"changed ({r['metric']} {r['base_score']} -> {r['tuned_score']}): {r['source']}: {r['prompt'][:60]!r}",
              file=sys.stderr)
