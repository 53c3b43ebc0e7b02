"""Preference data for reward modelling, DPO and KTO: load every dataset of a run, normalise its rows, split off eval rows.

Rows become TRL's conversational records (see ``dataformats``): pairs ``{"prompt", "chosen", "rejected"}`` for ``kind=
"preference"``, unpaired ``{"prompt", "completion", "label"}`` for ``kind="kto"`` (preference pairs are split into one
desirable and one undesirable row). TRL renders them through the model's chat template itself. A bad row stops the load
with ``FILE: row N: reason``, or is skipped and counted with ``data.on_bad_row=skip``, as for SFT.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from studio.engine.data.load import DataError, eval_count, load_dataset_spec, with_system


@dataclass
class PreferenceData:
    train: list[dict]
    eval: list[dict]
    report: dict = field(default_factory=dict)


def load_records(spec: str, kind: str, on_bad_row: str = "error", max_rows: int = 0) -> tuple[list[dict], dict, list[str]]:
    """One dataset spec -> (normalised records, its report line, skipped-row messages). ``kind``: 'preference' or 'kto'."""
    ds = load_dataset_spec(spec, on_bad_row, max_rows, kind)
    line = {"dataset": spec, "format": ds.format, "rows_in_file": ds.total_rows, "rows_used": len(ds.records),
            "skipped": len(ds.skipped)}
    return ds.records, line, ds.skipped


def prepare_preference_data(data_cfg, kind: str, seed: int) -> PreferenceData:
    """Every dataset of a run, mixed, shuffled with ``seed`` and split by ``data.val_size``; the report counts rows."""
    if not data_cfg.datasets:
        raise DataError("data.datasets: no preference dataset given")
    records, lines, skipped = [], [], []
    for spec in data_cfg.datasets:
        recs, line, skip = load_records(spec, kind, data_cfg.on_bad_row, data_cfg.max_samples)
        records += recs
        lines.append(line)
        skipped += skip
    if not records:
        raise DataError("no usable rows: every row was skipped")
    for rec in records:
        rec["prompt"] = with_system(rec["prompt"], data_cfg.system)
    random.Random(seed).shuffle(records)
    n_eval = eval_count(data_cfg.val_size, len(records))
    eval_rows, train_rows = records[:n_eval], records[n_eval:]
    report = {"kind": kind, "datasets": lines, "train_rows": len(train_rows), "eval_rows": len(eval_rows),
              "skipped_rows": len(skipped), "skipped_examples": skipped[:20]}
    if kind == "kto":
        report["desirable"] = sum(1 for r in train_rows if r["label"])
        report["undesirable"] = len(train_rows) - report["desirable"]
    return PreferenceData(train_rows, eval_rows, report)
