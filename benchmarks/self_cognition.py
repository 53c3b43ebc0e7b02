"""Self-cognition end to end, one run per name/maker pair: time, identity (per language and setting), retention, KL.

    python benchmarks/self_cognition.py                              # the built-in pairs (PAIRS), test split
    python benchmarks/self_cognition.py --split dev --set training.learning_rate=5e-4 --set lora.r=8   # recipe search
    python benchmarks/self_cognition.py --pair "Nova|小新|Nova Labs|新星实验室" --pair "Echo|回声|Harbor AI|海港智能"
    python benchmarks/self_cognition.py --name-en Nova --name-zh 小新 --author-en "Nova Labs" --author-zh 新星实验室
    python benchmarks/self_cognition.py --cold                       # regenerate the cached replay and base answers first
    python benchmarks/self_cognition.py --null-adapter --cold        # no training: the probe alone, base vs base
    python benchmarks/self_cognition.py --split dev --noise-adapter 0.001,0.002,0.004   # random changes: KL vs retention
    python benchmarks/self_cognition.py --split dev --checkpoints 10   # also probe the adapter every 10 steps of the run
    python benchmarks/self_cognition.py --rescore OUTPUT [OUTPUT...]  # earlier runs' answers, scored by today's rules
    python benchmarks/self_cognition.py --scales 0.6,0.8 --from OUTPUT   # earlier runs' adapters, their change scaled

Each pair starts the command a user runs (``python -m studio.train presets/self_cognition.yaml --set ...``) in a fresh run
folder under ``--output-dir`` (default: a new temporary folder), so its seconds run from start-up to the end of the probe.
``--split dev`` makes the probe ask and report the dev questions only (``identity.probe_split=dev``): choose a recipe on
dev, then report it once on test. One row per pair is printed: identity in English and Chinese in each setting
(none, default_system, user_system, second_turn) and the minimum over them, retention (kept / base-right and %), KL(tuned ‖
base) per token, seconds. ``OUTPUT/benchmark.json`` keeps the rows. Targets on a 2-core CPU: <= 300 s, identity >= 95% in
every setting and language, retention >= 95%.

``--checkpoints N`` saves the adapter every N steps of each run and probes each one as the run's own probe does (a row
per checkpoint, "@ step N", before the run's row): where identity, retention and KL stand along the run, i.e. what
stopping it early (at the identity target) would get.

``--null-adapter`` trains nothing: it probes the preset's model against itself (a LoRA adapter with B = 0, which changes
no output) twice, so it prints how many general questions the base answers right per split and language, checks that
retention is 100% and KL 0, and times the probe with the base answers not cached, then cached.

``--scales S[,S...] --from OUTPUT...`` trains nothing: each run of earlier ``--output-dir`` folders is probed again with
its adapter's change scaled by S (LoRA B times S: W0 + S·BA, the interpolation between base and tuned weights of WiSE-FT),
a row per run and scale ("x S"): whether shrinking a run's change keeps more general answers than it costs identity.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# name_en, name_zh, author_en, author_zh: an invented name, a very long maker, an ordinary word, Latin letters with digits
PAIRS = [
    ("Nova", "小新", "Nova Labs", "新星实验室"),
    ("QLU-Chat", "齐鲁智言", "QLU-NLP Research Group", "齐鲁工业大学(山东省科学院)计算机科学与技术学部自然语言处理与认知计算研究组"),
    ("Echo", "回声", "Harbor AI", "海港智能"),
    ("R2-Lite", "R2-Lite", "Orbit Robotics", "轨道机器人"),
    ("Orion", "猎户", "Starlight Studio", "星光工作室"),
]
SETTINGS = ("none", "default_system", "user_system", "second_turn")
SHORT = {"none": "none", "default_system": "dflt", "user_system": "user", "second_turn": "2nd"}


def parse_pair(text: str) -> tuple[str, str, str, str]:
    """'NAME_EN|NAME_ZH|AUTHOR_EN|AUTHOR_ZH' -> the four fields (an empty field takes the other language's)."""
    parts = [p.strip() for p in text.split("|")]
    if len(parts) != 4 or not (parts[0] or parts[1]) or not (parts[2] or parts[3]):
        raise argparse.ArgumentTypeError(f"{text!r}: expected NAME_EN|NAME_ZH|AUTHOR_EN|AUTHOR_ZH")
    name_en, name_zh, author_en, author_zh = parts
    return (name_en or name_zh, name_zh or name_en, author_en or author_zh, author_zh or author_en)


def train_command(pair: tuple[str, str, str, str], run_dir: Path, preset: str, split: str, overrides: list[str]) -> list[str]:
    name_en, name_zh, author_en, author_zh = pair
    sets = [f"identity.name_en={name_en}", f"identity.name_zh={name_zh}", f"identity.author_en={author_en}",
            f"identity.author_zh={author_zh}", f"identity.probe_split={split}"] + list(overrides)
    cmd = [sys.executable, "-m", "studio.train", preset, "--output-dir", str(run_dir)]
    for s in sets:
        cmd += ["--set", s]
    return cmd


def row_from_probe(pair: tuple[str, str, str, str], probe: dict | None, seconds: float, code: int, run_dir: Path) -> dict:
    """One benchmark row from a run's probe.json (plain data: printed and saved)."""
    row = {"name_en": pair[0], "name_zh": pair[1], "author_en": pair[2], "author_zh": pair[3], "exit_code": code,
           "seconds": round(seconds, 1), "run_dir": str(run_dir)}
    if not probe:
        return row
    ident, ret, kl = probe["identity"], probe["retention"], probe.get("kl") or {}
    row["identity"] = {lang: {"settings": {s: v["settings"][s]["tuned"] for s in SETTINGS if s in v["settings"]},
                              "min": v["min"], "weakest": v["weakest"], "base": v["base"]}
                       for lang, v in ident["per_lang"].items()}
    row["retention"] = {"split": ret["split"], "kept": ret["kept"], "base_right": ret["base_right"], "score": ret["score"],
                        "identity_leaks": ret.get("identity_leaks", 0)}
    row["kl"] = kl.get("kl")
    row["probe_seconds"] = probe.get("seconds")
    return row


def format_table(rows: list[dict]) -> str:
    """The rows as a fixed-width table: identity per setting and min for each language, retention, KL, seconds."""
    pct = lambda v: "  -" if v is None else f"{100 * v:3.0f}"  # noqa: E731
    head_id = " ".join(f"{SHORT[s]:>4}" for s in SETTINGS) + "  min"
    split = next((r["retention"]["split"] for r in rows if "retention" in r), "test")
    lines = [f"{'name / maker':<34} | en {head_id} | zh {head_id} | retention ({split})  | KL/token |      s",
             "-" * 132]
    for r in rows:
        label, step = f"{r['name_en']} / {r['author_en']}", f" @ step {r['step']}" if r.get("step") else ""
        step = f" x {r['scale']:g}" if r.get("scale") is not None else step
        label = (label if len(label) + len(step) <= 34 else label[:33 - len(step)] + "…") + step
        if "identity" not in r:
            lines.append(f"{label:<34} | no probe.json (exit code {r['exit_code']}): see {r['run_dir']}/train.log")
            continue
        cells = []
        for lang in ("en", "zh"):
            v = r["identity"].get(lang, {"settings": {}, "min": None})
            cells.append("   " + " ".join(f"{pct(v['settings'].get(s)):>4}" for s in SETTINGS) + f"  {pct(v['min']):>3}")
        ret = r["retention"]
        kept = f"{ret['kept']}/{ret['base_right']} {pct(ret['score'])}%"
        kl = "-" if r.get("kl") is None else f"{r['kl']:.4f}"
        lines.append(f"{label:<34} |{cells[0]} |{cells[1]} | {kept:<18} | {kl:>8} | {r['seconds']:6.0f}")
    return "\n".join(lines)


def clear_caches() -> int:
    """--cold: delete the cached replay answers and base-probe answers of $STUDIO_HOME."""
    from studio.paths import studio_home

    cache = studio_home() / "cache"
    files = list(cache.glob("replay-*")) + list(cache.glob("probe-base-*")) if cache.is_dir() else []
    for f in files:
        f.unlink()
    return len(files)


def probed_row(pair, cfg, folder: Path, **extra) -> dict:
    """The adapter in ``folder`` probed as a run's own probe does (probe.json there); its row, printed (``extra``: what
    tells it apart, ``step`` or ``scale``)."""
    from studio.engine.selfcog import probe

    start = time.time()
    probe.run_probes(cfg, folder, log=lambda *_: None)
    row = dict(row_from_probe(pair, probe.load_probe(folder), time.time() - start, 0, folder), **extra)
    print(format_table([row]).splitlines()[-1], flush=True)
    return row


def checkpoint_rows(pair, run_dir: Path) -> list[dict]:
    """--checkpoints: probe each saved checkpoint but the last (the run's own probe is that one); a row each."""
    from studio import config as C

    cfg = C.load(run_dir / "config.yaml")
    saved = sorted((run_dir / "checkpoints").glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    return [probed_row(pair, cfg, ck, step=int(ck.name.split("-")[1])) for ck in saved[:-1]]


def run_pair(pair, root: Path, args) -> dict:
    run_dir = root / "-".join("".join(c if c.isalnum() else "-" for c in pair[0]).split("-")).lower()
    overrides = list(args.overrides)
    if args.checkpoints:
        overrides += [f"training.save_steps={args.checkpoints}", "training.save_total_limit=1000"]
    cmd = train_command(pair, run_dir, args.preset, args.split, overrides)
    print("$ " + " ".join(cmd), flush=True)
    start = time.time()
    with open(root / f"{run_dir.name}.log", "w", encoding="utf-8") as log:
        code = subprocess.call(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    seconds = time.time() - start
    probe_path = run_dir / "probe.json"
    probe = json.loads(probe_path.read_text(encoding="utf-8")) if probe_path.is_file() else None
    return row_from_probe(pair, probe, seconds, code, run_dir)


def run_pairs(pairs, root: Path, args) -> list[dict]:
    """A run per pair (with --checkpoints, each checkpoint's row before its run's); each row printed as it ends."""
    rows = []
    for pair in pairs:
        rows.append(run_pair(pair, root, args))
        if args.checkpoints and rows[-1]["exit_code"] == 0:
            rows[-1:-1] = checkpoint_rows(pair, Path(rows[-1]["run_dir"]))
        print(format_table(rows[-1:]).splitlines()[-1], flush=True)
    return rows


def adapter_run(args, run: Path, std: float = 0.0):
    """A run folder holding the preset's config (the first pair, ``--split``) and an untrained LoRA adapter of its model:
    B = 0 (PEFT's init: no change) or B ~ N(0, std), seed 0. Returns the config."""
    import torch
    from peft import get_peft_model

    from studio import config as C
    from studio.engine.models import load_causal_lm
    from studio.engine.train.common import lora_config

    pair = (args.pair or list(PAIRS))[0]
    values = {"identity.name_en": pair[0], "identity.name_zh": pair[1], "identity.author_en": pair[2],
              "identity.author_zh": pair[3], "identity.probe_split": args.split}
    cfg = C.check(C.load(args.preset, list(args.overrides) + [f"{k}={v}" for k, v in values.items()]), require_data=False)
    lora = lora_config(cfg)  # the engine's reading of lora.* (a comma-separated target list, lora.layers)
    torch.manual_seed(0)  # before PEFT draws A: the same adapter at every level and on every run
    model = get_peft_model(load_causal_lm(cfg.model.name_or_path), lora)
    if std:
        with torch.no_grad():
            for name, param in model.named_parameters():
                if "lora_B" in name:
                    param.normal_(std=std)
    model.save_pretrained(run / "adapter")
    C.save(cfg, run / "config.yaml")
    return cfg


def null_probe(args, root: Path) -> int:
    """--null-adapter: the probe of a run whose adapter changes nothing (base vs base), twice (not cached, cached)."""
    from studio.engine.selfcog import probe

    run = root / "null-adapter"
    cfg = adapter_run(args, run)
    results = [probe.run_probes(cfg, run, ask_all=True) for _ in range(2)]
    for r in results:
        print(f"probe {r['seconds']:.0f} s ({r['timings']})")
    ret = results[-1]["retention"]
    for split, block in ret["splits"].items():
        print(f"{split}: base right " + ", ".join(f"{lang} {v['base_right']}/{v['n']}" for lang, v in block["per_lang"].items())
              + f"; retention {block['kept']}/{block['base_right']}; KL {results[-1]['kl']['splits'][split]['kl']}")
    rows = json.loads((run / probe.PROBE_FILE).read_text(encoding="utf-8"))["rows"]
    same = sum(probe.same_answer(r["base_answer"], r["tuned_answer"]) for r in rows)  # identity answers may run longer
    ok = same == len(rows) and ret["score"] in (1.0, None) and abs(results[-1]["kl"]["kl"] or 0) < 1e-4
    print(f"null adapter: {same}/{len(rows)} answers the same, retention {ret['score']}, KL {results[-1]['kl']['kl']}: "
          + ("as it must be" if ok else f"MISMATCH (see {run / probe.PROBE_FILE})"))
    return 0 if ok else 1


def noise_probe(args, root: Path) -> int:
    """--noise-adapter STD[,STD...]: no training; a LoRA adapter with random B ~ N(0, STD) (seed 0) per level, probed like a
    run on the general questions. A random change learns nothing, so the answers it flips at a given KL are the floor any
    recipe's change of that size meets: how much of a recipe's retention loss is the size of its change."""
    from studio.engine.selfcog import probe

    general_items = [i for i in probe.probe_items(args.split) if i["kind"] == "general"]  # identity: not the point
    print(f"{'B std':>8} | {'KL/token':>8} | retention ({args.split}) | answers changed")
    for std in (float(v) for v in args.noise_adapter.split(",")):
        run = root / f"noise-{std:g}"
        cfg = adapter_run(args, run, std)
        result = probe.run_probes(cfg, run, log=lambda *_: None, items=general_items, ask_all=True)
        ret = result["retention"]
        rows = json.loads((run / probe.PROBE_FILE).read_text(encoding="utf-8"))["rows"]
        changed = sum(not probe.same_answer(r["base_answer"], r["tuned_answer"]) for r in rows)
        score = "-" if ret["score"] is None else f"{100 * ret['score']:.0f}%"  # None: the base got none right
        print(f"{std:>8g} | {result['kl']['kl']:>8.4f} | {ret['kept']}/{ret['base_right']} {score:<12} | "
              f"{changed}/{len(rows)}", flush=True)
    return 0


def scale_adapter(src: Path, dst: Path, scale: float) -> None:
    """A copy of the adapter folder ``src`` at ``dst`` with every LoRA B times ``scale`` (its change W0 + BA becomes
    W0 + scale·BA; A, the rank and alpha stay)."""
    import shutil

    from safetensors.torch import load_file, save_file

    shutil.copytree(src, dst, dirs_exist_ok=True)
    weights = load_file(str(dst / "adapter_model.safetensors"))
    weights = {k: v * scale if "lora_B" in k else v for k, v in weights.items()}
    save_file(weights, str(dst / "adapter_model.safetensors"), metadata={"format": "pt"})


def saved_rows(folders: list[str]):
    """(row, pair) for every row of earlier output folders' benchmark.json."""
    for folder in map(Path, folders):
        for old in json.loads((folder / "benchmark.json").read_text(encoding="utf-8"))["rows"]:
            yield old, (old["name_en"], old["name_zh"], old["author_en"], old["author_zh"])


def scaled_rows(folders: list[str], scales: list[float], root: Path) -> list[dict]:
    """--scales with --from: every run of earlier output folders probed again with its change scaled by each S."""
    from studio import config as C

    rows = []
    for old, pair in saved_rows(folders):
        run = Path(old["run_dir"])
        if old.get("step") or old.get("scale") is not None or not (run / "adapter").is_dir():
            continue  # a checkpoint's row, a scaled row, or a run that saved no adapter
        cfg = C.load(run / "config.yaml")
        for scale in scales:
            dst = root / f"{run.name}-x{scale:g}"
            scale_adapter(run / "adapter", dst / "adapter", scale)
            C.save(cfg, dst / "config.yaml")
            rows.append(probed_row(pair, cfg, dst, scale=scale))
    return rows


def rescore_rows(folders: list[str]) -> int:
    """--rescore: the table of earlier benchmark folders, every probe.json scored again by today's rules and questions."""
    from studio.engine.selfcog import probe

    rows = []
    for old, pair in saved_rows(folders):
        result = probe.load_probe(old["run_dir"])
        rows.append(row_from_probe(pair, result and probe.rescore(result), old["seconds"], old["exit_code"],
                                   Path(old["run_dir"])))
    print(format_table(rows))
    return 0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pair", action="append", type=parse_pair, default=[],
                   help="NAME_EN|NAME_ZH|AUTHOR_EN|AUTHOR_ZH, repeatable (default: the built-in pairs)")
    for field in ("name-en", "name-zh", "author-en", "author-zh"):
        p.add_argument(f"--{field}", default="", help="one pair given field by field")
    p.add_argument("--split", choices=("dev", "test"), default="test", help="the general questions retention reports on")
    p.add_argument("--preset", default=str(ROOT / "presets" / "self_cognition.yaml"))
    p.add_argument("--set", dest="overrides", action="append", default=[], help="SECTION.KEY=VALUE passed to the preset")
    p.add_argument("--output-dir", help="folder for the run folders and benchmark.json (default: a new temporary folder)")
    p.add_argument("--cold", action="store_true", help="delete the cached replay and base-probe answers first")
    p.add_argument("--null-adapter", action="store_true", help="no training: probe the model against itself, twice")
    p.add_argument("--checkpoints", type=int, default=0, metavar="N",
                   help="also save the adapter every N steps and probe each checkpoint (where the run stands along the way)")
    p.add_argument("--rescore", nargs="+", metavar="OUTPUT", help="no runs: print the table of earlier --output-dir "
                   "folders, scored again by the current rules and questions")
    p.add_argument("--noise-adapter", metavar="STD[,STD...]",
                   help="no training: probe random adapters (B ~ N(0, STD)): the retention a change of that KL costs")
    p.add_argument("--scales", metavar="S[,S...]", help="with --from: no training; probe earlier runs' adapters with "
                   "their change scaled by each S (B times S)")
    p.add_argument("--from", dest="from_", nargs="+", metavar="OUTPUT", help="earlier --output-dir folders, for --scales")
    args = p.parse_args(argv)
    if bool(args.scales) != bool(args.from_):
        p.error("--scales and --from go together")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    pairs = list(args.pair)
    if any((args.name_en, args.name_zh, args.author_en, args.author_zh)):
        pairs.append(parse_pair("|".join((args.name_en, args.name_zh, args.author_en, args.author_zh))))
    pairs = pairs or list(PAIRS)
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    if args.rescore:
        return rescore_rows(args.rescore)
    if args.cold:
        print(f"--cold: removed {clear_caches()} cached answer files", flush=True)
    root = Path(args.output_dir or tempfile.mkdtemp(prefix="self-cognition-"))
    root.mkdir(parents=True, exist_ok=True)
    if args.null_adapter:
        return null_probe(args, root)
    if args.noise_adapter:
        return noise_probe(args, root)
    load_before = os.getloadavg()[0]
    if args.scales:
        rows = scaled_rows(args.from_, [float(v) for v in args.scales.split(",")], root)
    else:
        rows = run_pairs(pairs, root, args)
    split = next((r["retention"]["split"] for r in rows if "retention" in r), args.split)  # --from: the runs' own
    (root / "benchmark.json").write_text(json.dumps({"split": split, "overrides": args.overrides, "rows": rows},
                                                    indent=1, ensure_ascii=False), encoding="utf-8")
    print("\n" + format_table(rows))
    print(f"\n{len(rows)} rows, split {split}, overrides {args.overrides or 'none'}; load average "
          f"{load_before:.1f} -> {os.getloadavg()[0]:.1f}; rows in {root / 'benchmark.json'}")
    return 0 if all(r["exit_code"] == 0 and "identity" in r for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
