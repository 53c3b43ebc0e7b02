"""``studio data inspect|doctor|import|mix|prune``: look at a dataset exactly as training will, from the shell.

    studio data inspect data/train.jsonl --model default --cutoff-len 1024 --rows 3 --json
    studio data inspect assets/data --dataset demo_multiturn
    studio data inspect orca.parquet --map question=prompt --map chatgpt=chosen --map llama2-13b-chat=rejected
    studio data import orca.parquet --name orca --map system=system --map question=prompt ...   # prints the folder
    studio data mix a.jsonl@500 assets/data#demo_sft --name my_mix                                # prints the folder
    studio data prune ~/.cache/tuning-studio/datasets/orca --keep 10 [--dry-run]    # remove all but the newest 10 versions
    studio data doctor data/train.jsonl --eval data/eval.jsonl --json     # duplicates, train/eval overlap, quality flags

``inspect`` prints the detected format, row count, stats (token lengths under the model's chat template, rows the cutoff
would truncate, empty / duplicate / invalid rows) and the first rows rendered with the trained part marked. A bad file
prints the same named error as the Data tab (``FILE: line N: reason``) and exits with code 2. ``prune`` is the only way
versions of an editable copy are ever removed: it prints how many it removes (or, with ``--dry-run``, would remove).
"""

from __future__ import annotations

import json
import sys


def add_parser(sub) -> None:
    p = sub.add_parser("data", help="inspect a dataset (format, stats, rendered rows) or import it as an editable copy")
    dsub = p.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    ins = dsub.add_parser("inspect", help="detected format, row count, stats and the first rows rendered")
    ins.add_argument("path", help="a .json/.jsonl/.csv/.parquet file or a folder with dataset_info.json")
    ins.add_argument("--dataset", default="", help="the dataset_info.json entry to inspect (default: the first)")
    ins.add_argument("--model", default="default", help="whose tokenizer and chat template ('none': no token stats)")
    ins.add_argument("--cutoff-len", type=int, default=1024, help="count rows longer than this (default 1024)")
    ins.add_argument("--rows", type=int, default=3, help="how many rows to render (default 3)")
    ins.add_argument("--sample", type=int, default=0, help="token stats over this many evenly spaced rows (default: all)")
    ins.add_argument("--map", action="append", default=[], metavar="COLUMN=ROLE", help="map a column to a role (repeatable)")
    ins.add_argument("--json", action="store_true", help="print one JSON object")
    ins.set_defaults(run=run_inspect)
    imp = dsub.add_parser("import", help="copy a dataset into an editable, versioned workspace; prints its folder")
    imp.add_argument("path")
    imp.add_argument("--dataset", default="", help="the dataset_info.json entry to import")
    imp.add_argument("--name", default="", help="workspace name (default: the file or entry name)")
    imp.add_argument("--map", action="append", default=[], metavar="COLUMN=ROLE", help="map a column to a role (repeatable)")
    imp.set_defaults(run=run_import)
    mix = dsub.add_parser("mix", help="mix datasets (caps as SPEC@N, or --ratios with --total) into a new dataset")
    mix.add_argument("specs", nargs="+", help="datasets, each PATH[#ENTRY][@CAP]")
    mix.add_argument("--ratios", default="", help="comma-separated shares of --total, one per dataset (e.g. 3,1)")
    mix.add_argument("--total", type=int, default=0, help="rows in the mix when --ratios is given")
    mix.add_argument("--seed", type=int, default=0)
    mix.add_argument("--name", default="mix", help="name of the new dataset folder")
    mix.add_argument("--preview", action="store_true", help="print the plan and the first rows; save nothing")
    mix.set_defaults(run=run_mix)
    doc = dsub.add_parser("doctor", help="duplicates, near duplicates, train/eval overlap and quality flags, row by row")
    doc.add_argument("path", help="a dataset file or a folder with dataset_info.json")
    doc.add_argument("--dataset", default="", help="the dataset_info.json entry (default: the first)")
    doc.add_argument("--eval", default="", metavar="SPEC", help="an eval dataset: rows also in it are flagged")
    doc.add_argument("--threshold", type=float, default=0.8, help="near-duplicate Jaccard threshold (default 0.8)")
    doc.add_argument("--min-chars", type=int, default=2, help="flag answers shorter than this (default 2)")
    doc.add_argument("--model", default="none", help="tokenizer for the cut-answer check (default none: skipped)")
    doc.add_argument("--cutoff-len", type=int, default=1024)
    doc.add_argument("--sample", type=int, default=2000, help="rows tokenized for the cut-answer check (default 2000)")
    doc.add_argument("--json", action="store_true", help="print one JSON object")
    doc.set_defaults(run=run_doctor)
    prune = dsub.add_parser("prune", help="remove the files of all but the newest N versions of an editable copy")
    prune.add_argument("folder", help="the editable copy (a folder under $STUDIO_HOME/datasets)")
    prune.add_argument("--keep", type=int, required=True, metavar="N", help="versions to keep, newest first (>= 1)")
    prune.add_argument("--dry-run", action="store_true", help="print what would be removed; remove nothing")
    prune.set_defaults(run=run_prune)


def parse_mapping(items: list[str]) -> dict:
    mapping = {}
    for item in items:
        col, sep, role = item.rpartition("=")
        if not sep or not col or not role:
            raise ValueError(f"--map {item!r}: expected COLUMN=ROLE")
        mapping[col] = role
    return mapping


def _spec(args) -> str:
    return f"{args.path}#{args.dataset}" if args.dataset else args.path


def inspect(spec: str, model: str = "default", cutoff_len: int = 1024, rows: int = 3, mapping: dict | None = None,
            sample: int = 0) -> dict:
    """Everything ``inspect`` prints, as plain data (the UI and tests can call it too)."""
    from studio.engine.data import view as ds

    view = ds.open_dataset(spec, mapping or None)
    tok = None
    if model and model != "none" and not view.format_error:
        from studio.engine.models import load_tokenizer

        tok = load_tokenizer(model)
    out = {"path": spec, "dataset": view.entry, "entries": view.entries, "format": view.format,
           "format_error": view.format_error, "columns": view.columns, "rows": len(view), "model": model if tok else None,
           "stats": ds.stats(view, tok, cutoff_len, token_sample=sample) if not view.format_error else None, "examples": []}
    for i in range(min(rows, len(view))):
        example = {"index": i, "where": view.where(i), "row": view.row(i)}
        if tok is not None:
            try:
                example["views"] = [dict(v, segments=[[t, on] for t, on in v["segments"]])
                                    for v in ds.render_row(view, i, tok, cutoff_len)["views"]]
            except ds.DataError as exc:
                example["error"] = str(exc)
        out["examples"].append(example)
    return out


def run_inspect(args) -> int:
    from studio.engine.data.formats import DataError
    from studio.engine.models import ModelLoadError

    try:
        for flag, value, low in (("--cutoff-len", args.cutoff_len, 1), ("--rows", args.rows, 0), ("--sample", args.sample, 0)):
            if value < low:
                raise ValueError(f"{flag} {value}: must be >= {low}")
        report = inspect(_spec(args), args.model, args.cutoff_len, args.rows, parse_mapping(args.map), args.sample)
    except (DataError, ModelLoadError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(report, ensure_ascii=False, indent=1))
    else:
        print(_human(report))
    return 0


def _human(r: dict) -> str:
    lines = [f"{r['path']}: {r['rows']} rows, format {r['format']}" + (f" (entry {r['dataset']} of {', '.join(r['entries'])})"
                                                                         if r["dataset"] else "")]
    if r["format_error"]:
        lines.append(f"  {r['format_error']}")
        lines.append(f"  columns: {', '.join(r['columns'])}")
    st = r["stats"] or {}
    if st:
        lines.append(f"  empty {st['empty_rows']}, duplicate {st['duplicate_rows']}, invalid {st['invalid_rows']}")
        lines += [f"    {x}" for x in st["invalid_examples"]]
    if st.get("tokens", {}).get("count"):
        tk = st["tokens"]
        lines.append(f"  tokens: min {tk['min']}, mean {tk['mean']}, p95 {tk['p95']}, max {tk['max']}; "
                     f"{st['truncated_rows']} rows over cutoff_len {st['cutoff_len']}")
        lines += [f"    {b['from']:>6}-{b['to']:<6} {b['rows']}" for b in st["histogram"]]
    for ex in r["examples"]:
        lines.append(f"--- row {ex['index']} ({ex['where']})")
        for v in ex.get("views", []):
            text = "".join(f"[[{t}]]" if on else t for t, on in v["segments"])
            lines.append(f"[{v['title']}: {v['num_tokens']} tokens, {v['num_trained']} trained, [[trained]]]\n{text}")
        if ex.get("error"):
            lines.append(f"  error: {ex['error']}")
    return "\n".join(lines)


def run_import(args) -> int:
    from studio.engine.data.formats import DataError
    from studio.engine.data.workspace import Workspace

    try:
        ws = Workspace.create(_spec(args), name=args.name, mapping=parse_mapping(args.map) or None)
    except (DataError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    view = ws.view()
    print(f"{view.format}, {len(view)} rows" + (f" ({view.format_error})" if view.format_error else ""), file=sys.stderr)
    print(ws.spec)
    return 0


def run_mix(args) -> int:
    from studio.engine.data.load import parse_spec
    from studio.engine.data.formats import DataError
    from studio.engine.data.mix import MixPart, plan_mix, preview_mix, save_mix

    try:
        ratios = [float(x) for x in args.ratios.split(",")] if args.ratios else [0.0] * len(args.specs)
        if len(ratios) != len(args.specs):
            raise ValueError(f"--ratios has {len(ratios)} values for {len(args.specs)} datasets")
        parts = []
        for spec, ratio in zip(args.specs, ratios):
            ref = parse_spec(spec)
            parts.append(MixPart(f"{ref.path}#{ref.name}" if ref.name else str(ref.path), cap=ref.max_rows, ratio=ratio))
        plan = plan_mix(parts, total=args.total, seed=args.seed)
        for p in plan["parts"]:
            print(f"{p['spec']}: {p['taken']} of {p['rows']} rows" + (f" ({p['short_by']} short)" if p["short_by"] else ""),
                  file=sys.stderr)
        if args.preview:
            print(preview_mix(plan).to_string(index=False, max_colwidth=80))
            return 0
        ws = save_mix(plan, args.name)
    except (DataError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{plan['total']} rows of {plan['kind']} data", file=sys.stderr)
    print(ws.spec)
    return 0


def run_doctor(args) -> int:
    """``studio data doctor``: every flag with its rows (0-based, as the Data tab numbers them)."""
    from studio.engine.data import doctor
    from studio.engine.data import view as ds
    from studio.engine.data.formats import DataError
    from studio.engine.models import ModelLoadError

    try:
        if args.min_chars < 0 or args.cutoff_len < 1 or args.sample < 0:
            raise ValueError("--min-chars, --sample must be >= 0 and --cutoff-len >= 1")
        tok = None
        if args.model != "none":
            from studio.engine.models import load_tokenizer

            tok = load_tokenizer(args.model)
        report = doctor.examine(ds.open_dataset(_spec(args)), ds.open_dataset(args.eval) if args.eval else None, tok,
                                args.cutoff_len, args.threshold, args.min_chars, args.sample)
    except (DataError, ModelLoadError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(report, ensure_ascii=False))
        return 0
    print(f"{_spec(args)}: {report['rows']} rows, {report['flagged_rows']} flagged, {report['seconds']} s "
          f"(near duplicates: Jaccard >= {report['threshold']}, MinHash {report['num_perm']})")
    for flag, rows in report["flags"].items():
        if rows:
            print(f"  {flag:16} {len(rows):>7}  rows {', '.join(map(str, rows[:12]))}{' ...' if len(rows) > 12 else ''}")
    return 0


def run_prune(args) -> int:
    from studio.engine.data.formats import DataError
    from studio.engine.data.workspace import Workspace

    try:
        ws = Workspace(args.folder)
        gone = ws.prunable(args.keep)
        if not args.dry_run:
            removed = ws.prune(args.keep, expect=len(gone))
    except (DataError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    listed = f" (versions {', '.join(map(str, gone[:20]))}{', ...' if len(gone) > 20 else ''})" if gone else ""
    verb = "would remove" if args.dry_run else "removed"
    print(f"{ws.name}: {verb} {len(gone) if args.dry_run else removed} version file(s){listed}; the newest "
          f"{args.keep} and every history line stay")
    return 0
