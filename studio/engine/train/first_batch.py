"""The first training batch of an SFT or pt run, exactly as the trainer will see it, before anything is trained.

The run's data is prepared by the same function training uses (chat template, loss mask, cutoff, shuffle, eval split),
then handed to TRL's ``SFTTrainer`` with the run's own arguments (``sft.sft_args``: sampler, seed, batch size,
padding-free collator) around a stand-in model of the same vocabulary with one tiny layer (the trainer needs a model;
the batch does not depend on it). The first item of that trainer's own training dataloader is the batch the real run
starts with: same rows, same order, same packing.

    from studio.engine.train.first_batch import first_batch
    batch = first_batch(cfg, access=FULL)   # {"rows": [{"tokens", "trained", "segments"}], "padding_free", ...}
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from studio import config as C
from studio.engine.access import Access
from studio.engine.data.formats import DataError

BOUNDARY = "▌"  # shown where a packed (padding-free) row starts


def first_batch(cfg: C.RunConfig, *, access: Access) -> dict:
    """The first batch of ``cfg`` (stage sft or pt): per row its token count, trained tokens, and the decoded text in
    runs of (text, trained); ``access``: what the caller may read (a web page passes its policy)."""
    if cfg.method.stage not in ("sft", "pt"):
        raise C.ConfigError(f"method.stage={cfg.method.stage}: the first batch is shown for sft and pt runs")
    if cfg.identity.name_en.strip():
        raise C.ConfigError("identity.name_en: a self-cognition run builds its rows when it starts; its first batch "
                            "is not known before")
    access.config(cfg)
    batch, tokenizer = _trainer_batch(cfg)
    return describe(batch, tokenizer, cfg.training.batching == "padding_free")


def _trainer_batch(cfg: C.RunConfig):
    from studio.engine.data.load import prepare_pt_data, prepare_sft_data
    from studio.engine.train import common

    tokenizer = common.start(cfg)
    prepare = prepare_pt_data if cfg.method.stage == "pt" else prepare_sft_data
    data = prepare(cfg.data, tokenizer, cfg.training.cutoff_len, cfg.training.seed)
    batch = next(trainer_batches(cfg, tokenizer, data, limit=1))
    return {k: v.tolist() for k, v in batch.items() if hasattr(v, "tolist")}, tokenizer


def trainer_batches(cfg: C.RunConfig, tokenizer, data, limit: int):
    """The first ``limit`` batches the run's trainer will draw from prepared ``data``, epoch after epoch (the sampler
    reseeded per epoch as the trainer does it): collated tensors, no model run."""
    from datasets import Dataset
    from trl import SFTTrainer

    from studio.engine.train import sft

    with tempfile.TemporaryDirectory(prefix="studio-first-batch-") as tmp:
        trainer = SFTTrainer(model=stand_in_model(tokenizer), args=sft.sft_args(cfg, Path(tmp), has_eval=bool(data.eval)),
                             processing_class=tokenizer, train_dataset=Dataset.from_list(data.train),
                             eval_dataset=Dataset.from_list(data.eval) if data.eval else None)
        loader, drawn, epoch = trainer.get_train_dataloader(), 0, 0
        while drawn < limit:
            if hasattr(loader, "set_epoch"):
                loader.set_epoch(epoch)
            for batch in loader:
                yield batch
                drawn += 1
                if drawn >= limit:
                    return
            epoch += 1


def stand_in_model(tokenizer):
    """A one-layer Llama (width 8) with the tokenizer's vocabulary: what a trainer needs to build its dataloader."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=8, intermediate_size=16, num_hidden_layers=1,
                         num_attention_heads=1, num_key_value_heads=1, pad_token_id=tokenizer.pad_token_id,
                         eos_token_id=tokenizer.eos_token_id)
    model = LlamaForCausalLM(config)
    model.config.use_cache = False
    return model


def describe(batch: dict, tokenizer, padding_free: bool) -> dict:
    """Rows of a collated batch: padding-free batches are one sequence cut where ``position_ids`` restart at 0."""
    ids, labels = batch["input_ids"], batch["labels"]
    rows = []
    if padding_free:
        flat_ids, flat_labels, pos = ids[0], labels[0], batch["position_ids"][0]
        starts = [k for k, p in enumerate(pos) if p == 0] + [len(pos)]
        spans = [(a, b) for a, b in zip(starts, starts[1:]) if b > a]
        rows = [_row(tokenizer, flat_ids[a:b], flat_labels[a:b]) for a, b in spans]
    else:
        mask = batch.get("attention_mask") or [[1] * len(r) for r in ids]
        for r_ids, r_labels, r_mask in zip(ids, labels, mask):
            rows.append(_row(tokenizer, r_ids, r_labels, r_mask))
    if not rows:
        raise DataError("the first batch is empty")
    return {"rows": rows, "padding_free": padding_free, "tokens": sum(r["tokens"] for r in rows),
            "trained": sum(r["trained"] for r in rows), "shape": [len(ids), len(ids[0])], "boundary": BOUNDARY}


def _row(tokenizer, ids: list[int], labels: list[int], mask: list[int] | None = None) -> dict:
    """One row: its tokens decoded in runs of the same kind: trained, context (not trained) or padding."""
    kinds = ["pad" if mask is not None and not m else ("trained" if lab != -100 else "context")
             for lab, m in zip(labels, mask or [1] * len(ids))]
    segments, start = [], 0
    for k in range(1, len(ids) + 1):
        if k == len(ids) or kinds[k] != kinds[start]:
            segments.append((tokenizer.decode(ids[start:k]), kinds[start]))
            start = k
    real = [k for k in kinds if k != "pad"]
    return {"tokens": len(real), "trained": real.count("trained"), "padding": len(kinds) - len(real),
            "segments": segments}
