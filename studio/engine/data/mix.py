"""Training mixes: several datasets, each with a row cap or a ratio of the total, previewed, then saved as one dataset.

    plan = plan_mix([MixPart("a.jsonl", cap=500), MixPart("data#identity", ratio=1)], total=0, seed=0)
    preview_mix(plan)            # DataFrame: dataset, row, text
    save_mix(plan, "my_mix")     # a new workspace (studio.engine.data.workspace) holding the normalised rows

Rows are normalised first (chat messages for SFT; TRL's prompt/chosen/rejected or prompt/completion/label for
preference / KTO; text for pre-training), so datasets of different file formats mix; kinds must not be mixed.
"""

from __future__ import annotations

import json
import random
import tempfile
from dataclasses import dataclass
from pathlib import Path

from studio.engine.access import FULL, Access
from studio.engine.data import formats as F
from studio.engine.data.formats import DataError
from studio.engine.data.view import cell, normalize, open_dataset


@dataclass
class MixPart:
    spec: str
    cap: int = 0  # at most this many rows (0 = no cap)
    ratio: float = 0.0  # share of ``total`` (with a total); ratios are relative to each other


def plan_mix(parts: list[MixPart], total: int = 0, seed: int = 0, access: Access = FULL) -> dict:
    """Which rows of each dataset the mix takes: {kind, total, parts: [{spec, format, rows, wanted, taken, indices}]}.
    ``access``: the caller's policy for reading the datasets (engine/access.py)."""
    if not parts:
        raise DataError("add at least one dataset to the mix")
    ratios = sum(p.ratio for p in parts if p.ratio > 0)
    out, kinds = [], set()
    for k, part in enumerate(parts):
        view = open_dataset(part.spec, access=access)
        if view.format_error:
            raise DataError(f"{part.spec}: {view.format_error}")
        kinds.add(F.kind_of(view.format))
        n = len(view)
        wanted = round(total * part.ratio / ratios) if total and ratios and part.ratio > 0 else n
        if part.cap:
            wanted = min(wanted, part.cap)
        taken = min(wanted, n)
        indices = sorted(random.Random(seed * 1000 + k).sample(range(n), taken)) if taken < n else list(range(n))
        out.append({"spec": part.spec, "format": view.format, "rows": n, "wanted": wanted, "taken": taken,
                    "short_by": wanted - taken, "indices": indices})
    if len(kinds) > 1:
        raise DataError(f"cannot mix {' and '.join(sorted(kinds))} datasets: a mix trains one kind of data")
    return {"kind": kinds.pop(), "total": sum(p["taken"] for p in out), "seed": seed, "parts": out}


def mixed_rows(plan: dict, limit: int | None = None):
    """(dataset, row index, normalised row) in the mix order (shuffled with the plan's seed)."""
    order = [(k, i) for k, p in enumerate(plan["parts"]) for i in p["indices"]]
    random.Random(plan["seed"]).shuffle(order)
    views = [open_dataset(p["spec"]) for p in plan["parts"]]
    for k, i in order[:limit]:
        view = views[k]
        try:
            yield plan["parts"][k]["spec"], i, normalize(view.row(i), view.format_of(i))
        except DataError as exc:
            raise DataError(f"{view.where(i)}: {exc}") from None


def preview_mix(plan: dict, rows: int = 20):
    import pandas as pd

    data = [{"dataset": spec, "row": i, "text": cell(_summary(norm))} for spec, i, norm in mixed_rows(plan, rows)]
    return pd.DataFrame(data, columns=["dataset", "row", "text"])


def _summary(norm: dict) -> str:
    if "text" in norm:
        return norm["text"]
    if "messages" in norm:
        return " | ".join(f"{m['role']}: {m['content']}" for m in norm["messages"])
    return json.dumps(norm, ensure_ascii=False)


def save_mix(plan: dict, name: str, root: Path | None = None):
    """Write the mix as a JSONL of normalised rows into a new workspace; returns the Workspace. ``name`` becomes a
    folder name (letters, digits, '.', '_', '-'): a name like ``../../x`` cannot reach outside."""
    from studio.engine.data.workspace import Workspace, dataset_name

    name = dataset_name(name or "mix")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"{name}.jsonl"
        with open(path, "w", encoding="utf-8") as fh:
            for _, _, norm in mixed_rows(plan):
                fh.write(json.dumps(norm, ensure_ascii=False) + "\n")
        return Workspace.create(path, name=name, root=root)
