"""``provenance.json``, written next to the model card of every export: where the model came from, in a form a script can
check. It holds the base model and a fingerprint of its weights (SHA-256 of its safetensors and config), every data file
the run trained on with its SHA-256 and size, the run's resolved config, its final metrics (status.json and the last
metrics line), the self-cognition probe, the export's logits check (and each GGUF's, llama.cpp's included when it ran),
and the studio's version (package version and git commit) with the library versions.

Nothing here loads a model; hashing reads the files once (about a second per GB).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import subprocess
import time
from importlib import metadata
from pathlib import Path

from studio import paths

LIBRARIES = ("torch", "transformers", "peft", "trl", "datasets", "accelerate", "gguf")
STAGE_KIND = {"sft": "sft", "dpo": "preference", "rm": "preference", "kto": "kto"}


def sha256(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def file_record(path: Path) -> dict:
    path = Path(path)
    return {"path": str(path.resolve()), "bytes": path.stat().st_size, "sha256": sha256(path)}


def model_fingerprint(name: str) -> dict:
    """{name, path, files: [{path, bytes, sha256}], sha256 (of the file hashes)} for a local model; a hub id that is not
    on disk is named as it is (its revision is whatever the hub served)."""
    from studio.engine.models import ModelLoadError, resolve_model

    out: dict = {"name": name}
    try:
        folder = Path(resolve_model(name))
    except ModelLoadError as exc:
        return dict(out, error=str(exc))
    if not folder.is_dir():
        return dict(out, hub_id=str(folder))
    files = sorted([*folder.glob("*.safetensors"), *[folder / f for f in ("config.json",) if (folder / f).is_file()]])
    records = [file_record(f) for f in files]
    whole = hashlib.sha256("".join(r["sha256"] for r in records).encode()).hexdigest()
    return dict(out, path=str(folder), files=records, sha256=whole)


def data_files(config, run_dir: Path | None) -> list[dict]:
    """Every file behind the run's ``data.datasets`` (and the identity rows a self-cognition run wrote), hashed."""
    from studio.config import resolve_dataset_path
    from studio.engine.data.load import DataError, parse_spec, resolve

    out, seen = [], set()
    kind = STAGE_KIND.get(config.method.stage) if config is not None else None
    for spec in (config.data.datasets if config is not None else []):
        try:
            ref = parse_spec(resolve_dataset_path(spec, None))
            try:
                files = resolve(ref, kind).files
            except DataError:
                files = resolve(ref, None).files
        except (DataError, OSError) as exc:
            out.append({"spec": spec, "error": str(exc)})
            continue
        for path, _ in files:
            if path not in seen:
                seen.add(path)
                out.append(dict(file_record(path), spec=spec))
    identity = Path(run_dir) / "identity.jsonl" if run_dir else None
    if identity is not None and identity.is_file():
        out.append(dict(file_record(identity), spec="self-cognition rows (identity.jsonl)"))
    return out


def final_metrics(run_dir: Path | None) -> dict:
    if run_dir is None:
        return {}
    from studio.engine import curves, rundir

    status = rundir.read_status(run_dir) or {}
    keep = ("state", "step", "max_steps", "final_loss", "elapsed", "eval_loss", "eval_accuracy", "eval_accuracy_before")
    return {"status": {k: status[k] for k in keep if k in status}, "last_logged": curves.latest(run_dir)}


def studio_version() -> dict:
    try:
        version = metadata.version("tuning-studio")
    except metadata.PackageNotFoundError:
        version = "unknown"
    try:
        commit = subprocess.run(["git", "-C", str(paths.repo_root()), "rev-parse", "HEAD"], capture_output=True,
                                text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    libs = {}
    for lib in LIBRARIES:
        try:
            libs[lib] = metadata.version(lib)
        except metadata.PackageNotFoundError:
            pass
    return {"package": version, "git_commit": commit or None, "libraries": libs}


def build(result: dict, config=None, run_dir: Path | None = None) -> dict:
    """The provenance record of an export whose result dict is ``result`` (see ``merge.merge_adapter``)."""
    probe = None
    if run_dir is not None and (Path(run_dir) / "probe.json").is_file():
        try:
            probe = json.loads((Path(run_dir) / "probe.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            probe = None
    checks = {"export": {k: result.get(k) for k in ("ok", "max_abs_diff", "tolerance", "top1_agreement", "verification")},
              "gguf": result.get("gguf") or []}
    return {"made_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "export": {k: result.get(k) for k in (
                "out_dir", "kind", "output", "dtype", "sources", "weights", "combine", "density")},
            "base_model": model_fingerprint(result.get("base") or "default") if result.get("base") else None,
            "run_dir": str(run_dir) if run_dir else None, "data_files": data_files(config, run_dir),
            "config": dataclasses.asdict(config) if config is not None else None,
            "final_metrics": final_metrics(run_dir), "probe": probe, "logits_check": checks, "studio": studio_version()}


def write(folder: Path, record: dict) -> Path:
    path = Path(folder) / "provenance.json"
    path.write_text(json.dumps(record, indent=2, ensure_ascii=False, default=str), encoding="utf-8")
    return path
