"""``studio train CONFIG.yaml [--set section.key=value ...] [--output-dir DIR] [--resume] [--plan]``.

Validates the whole config before anything heavy is imported, trains in the foreground, and prints the run folder as the
last line of its output (the UI and scripts read it). Same as ``python -m studio.train``. A config whose ``distributed``
section asks for several processes (or DeepSpeed/FSDP) is handed to ``accelerate launch`` with the accelerate config the
studio writes into the run folder: the very command the studio's queue starts (engine/jobs/distributed.py).
"""

from __future__ import annotations

import sys
from pathlib import Path


def add_parser(sub) -> None:
    p = sub.add_parser("train", help="train a model from a config/preset YAML",
                       description="Train from a YAML config (e.g. presets/sft_lora.yaml); the run folder is printed last.")
    configure(p)
    p.set_defaults(run=run)


def configure(p) -> None:
    p.add_argument("config", nargs="?", help="YAML config or preset (or a run folder's config.yaml with --resume)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override one config value (repeatable), e.g. --set training.learning_rate=1e-4")
    p.add_argument("--output-dir", help="run folder to use (default: a new folder under $STUDIO_HOME/runs)")
    p.add_argument("--resume", action="store_true", help="continue the run in --output-dir from its last checkpoint")
    p.add_argument("--check", action="store_true", help="validate the config and print it, without training")
    p.add_argument("--plan", action="store_true",
                   help="estimate memory and time (parameters, memory breakdown, data, a 3-step micro-run) without "
                        "training; the last line is one JSON object (peak_memory_bytes, eta_seconds, steps, fits, ...)")
    p.add_argument("--no-micro-run", dest="micro_run", action="store_false",
                   help="with --plan: skip the 3-step micro-run (no measured time)")


def _check_model_path(name: str) -> None:
    """A missing local model folder is named now, before minutes of imports and data preparation."""
    from studio import config as C

    if name != "default" and name.startswith((".", "/", "~")) and not Path(name).expanduser().is_dir():
        raise C.ConfigError(f"model.name_or_path={name!r}: no such model folder")


def _check_datasets(cfg) -> None:
    """Every dataset resolves (the file or folder exists; a dataset_info.json is valid and its entry stays inside its
    folder) before minutes of imports; rows are read by the run itself."""
    from studio import config as C
    from studio.engine.data.load import DataError, parse_spec, resolve

    kind = {"rm": "preference", "dpo": "preference", "kto": "kto", "pt": "text"}.get(cfg.method.stage, "sft")
    for spec in cfg.data.datasets:
        try:
            resolve(parse_spec(spec), kind)
        except DataError as exc:
            raise C.ConfigError(f"data.datasets: {exc}") from None


def _check_reporting(cfg) -> None:
    """A logger named in training.report_to must be installed: said now, not after the model has loaded."""
    import importlib.util

    from studio import config as C

    for name in [] if cfg.training.report_to == "none" else cfg.training.report_to.split(","):
        if importlib.util.find_spec(name) is None:
            raise C.ConfigError(f"training.report_to={cfg.training.report_to}: the {name} package is not installed "
                                f"(pip install {name}, or pip install 'tuning-studio[{name}]')")


def _plan(cfg, micro: bool) -> int:
    """``--plan``: progress on stderr, the plan as one JSON line last on stdout (exit 0 whether or not it fits)."""
    import json

    from studio.engine.data.load import DataError
    from studio.engine.models import ModelLoadError
    from studio.engine.train.plan import make_plan

    try:
        plan = make_plan(cfg, micro=micro, log=lambda m: print(m, file=sys.stderr, flush=True))
    except (DataError, ModelLoadError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(plan, ensure_ascii=False))
    return 0


def run(args) -> int:
    from studio import config as C
    from studio.engine.jobs import distributed
    from studio.engine.jobs.training import launch_problems
    from studio.engine.train.runner import RunDirError, prepare_run_dir
    from studio.engine.train.runner import run as run_training

    output_dir = args.output_dir
    if args.resume and not output_dir and args.config and Path(args.config).name == "config.yaml":
        output_dir = str(Path(args.config).parent)  # `studio train RUN/config.yaml --resume`
    try:
        cfg = C.check(C.load(args.config, args.overrides))
        _check_model_path(cfg.model.name_or_path)
        _check_datasets(cfg)
        if not distributed.under_launcher():  # a rank of a launched group: the launcher's side checked it
            launch_problems(cfg)
        _check_reporting(cfg)
        if getattr(args, "own_process", False) and not (args.check or args.plan):
            from studio import allocator

            allocator.reexec_with(cfg.training.allocator)  # before anything is written; returns when nothing to do
        if args.check:
            print(C.dump(cfg), end="")
            return 0
        if args.plan:
            return _plan(cfg, args.micro_run)
        run_dir = prepare_run_dir(cfg, output_dir, args.resume)
    except (C.ConfigError, RunDirError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if distributed.needs_launcher(cfg) and not distributed.under_launcher():
        return _launch(cfg, run_dir, args.resume)
    distributed.apply_devices(cfg)
    if cfg.method.finetuning_type != "qlora":  # a whole process for one run: nothing here will quantize
        from studio.engine.models import skip_bitsandbytes

        skip_bitsandbytes()
    code = run_training(cfg, run_dir, resume=args.resume, command=["studio", "train", *sys.argv[sys.argv.index("train") + 1:]]
                        if "train" in sys.argv else [sys.executable, "-m", "studio.train", *sys.argv[1:]])
    if code:
        from studio.engine import rundir

        err = rundir.read_status(run_dir).get("error") or "see train.log"
        print(f"error: training failed: {err.splitlines()[-1] if err else ''} (log: {run_dir / rundir.LOG})", file=sys.stderr)
    print(run_dir)
    return code


def _launch(cfg, run_dir: Path, resume: bool) -> int:
    """Several processes: write the accelerate config into the run folder and run ``accelerate launch`` of this run in
    the foreground (argv, no shell). Ctrl-C reaches the launcher too, which hands it to every rank (each stops after its
    step and saves a checkpoint)."""
    import shlex
    import subprocess

    from studio import config as C
    from studio.engine import rundir
    from studio.engine.jobs import child, distributed, training

    if not resume or not (run_dir / rundir.CONFIG).exists():
        C.save(cfg, run_dir / rundir.CONFIG)
    distributed.write_accelerate_config(run_dir, cfg)
    (run_dir / rundir.STOP).unlink(missing_ok=True)  # an earlier stop request: every rank reads this folder's STOP
    argv = training.job_argv(run_dir, cfg, sys.executable, resume)
    (run_dir / rundir.COMMAND).write_text(shlex.join(argv) + "\n", encoding="utf-8")
    print(f"launching {distributed.world_size(cfg)} processes: {shlex.join(argv)}", flush=True)
    proc = subprocess.Popen(argv, env=child.child_env())
    while True:
        try:
            code = proc.wait()
            break
        except KeyboardInterrupt:  # the launcher got it too and is stopping its ranks: wait for them
            continue
    if not distributed.is_worker_machine(cfg):  # a worker machine's folder may be the main one's (shared disk)
        training.settle(run_dir, code, stopped=False)
    print(run_dir)
    return code
