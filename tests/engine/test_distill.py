"""Self-distillation on general rows (engine/train/distill.py): the mask follows the batch layout, the KL is zero for an
adapter that changes nothing and positive (with gradients on the adapter only) for one that does, and a self-cognition run
with ``identity.distill`` trains, logs ``distill_kl`` and refuses configs it cannot serve."""

from __future__ import annotations

import json

import pytest
import torch

from studio import config as C
from studio.engine import rundir
from studio.engine.train.distill import (DISTILL, DistillCollator, distill_kl, distilled_rows, identity_ce,
                                        without_general_ce)
from studio.engine.train.runner import run


def _examples():
    return [{"input_ids": [1, 2, 3], "labels": [-100, 2, 3], DISTILL: 0},
            {"input_ids": [4, 5], "labels": [-100, 5], DISTILL: 1},
            {"input_ids": [6, 7, 8, 9], "labels": [-100, -100, 8, 9], DISTILL: 1}]


@pytest.mark.parametrize("padding_free", [True, False])
def test_collator_mask_follows_the_batch_layout(padding_free):
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    batch = DistillCollator(DataCollatorForLanguageModeling(pad_token_id=0, padding_free=padding_free))(_examples())
    mask = batch[DISTILL]
    assert mask.shape == batch["input_ids"].shape and mask.dtype == torch.bool
    if padding_free:
        assert mask.tolist() == [[False] * 3 + [True] * 6]
    else:
        assert mask.tolist() == [[False] * 4, [True, True, False, False], [True] * 4]


def _peft(tiny_model_dir):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    return get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules="all-linear"))


def _kl(model, inputs, mask):
    captured = []
    decoder = model.get_base_model().base_model
    handle = decoder.register_forward_hook(lambda _m, _a, out: captured.append(out.last_hidden_state))
    model(input_ids=inputs["input_ids"])
    handle.remove()
    return distill_kl(model, captured[0], inputs, mask)


def test_kl_is_zero_for_a_null_adapter_and_trains_only_the_adapter(tiny_model_dir):
    model = _peft(tiny_model_dir)
    torch.manual_seed(0)
    ids = torch.randint(10, 1000, (2, 12))
    labels = ids.clone()
    labels[:, :4] = -100
    mask = torch.zeros_like(ids, dtype=torch.bool)
    mask[1] = True  # only the second row is distilled
    inputs = {"input_ids": ids, "labels": labels}
    assert abs(float(_kl(model, inputs, mask))) < 1e-6  # lora_B starts at zero: tuned == base
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    kl = _kl(model, inputs, mask)
    assert float(kl) > 1e-4
    kl.backward()
    grads = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
    assert grads and all("lora_" in n for n in grads)
    assert float(distill_kl(model, torch.zeros(2, 12, 32), inputs, torch.zeros_like(mask))) == 0.0  # nothing distilled


@pytest.mark.parametrize("padding_free", [True, False])
def test_the_base_forward_on_the_distilled_rows_alone_gives_the_kl_of_the_whole_batch(tiny_model_dir, padding_free):
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    from studio.engine.train.fast_paths import use_packed_attention

    model = _peft(tiny_model_dir)
    use_packed_attention(model)  # as training does: a pack's rows attend only within themselves
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    g = torch.Generator().manual_seed(1)
    examples = []
    for n, flag in zip((7, 5, 9, 6, 4), (0, 1, 0, 1, 1)):
        ids = torch.randint(10, 1000, (n,), generator=g).tolist()
        examples.append({"input_ids": ids, "labels": [-100] * 2 + ids[2:], DISTILL: flag})
    batch = DistillCollator(DataCollatorForLanguageModeling(pad_token_id=0, padding_free=padding_free))(examples)
    mask = batch.pop(DISTILL)
    inputs = dict(batch)
    sub, _ = distilled_rows({k: v for k, v in inputs.items() if k != "labels"}, mask,
                            (inputs["labels"][:, 1:] != -100) & mask[:, 1:])
    if padding_free:  # the identity rows are left out of the base forward
        assert sub["input_ids"].numel() == sum(len(e["input_ids"]) for e in examples if e[DISTILL])
        assert sub["cu_seq_lens_q"].tolist() == [0, 5, 11, 15] and sub["position_ids"].tolist()[0][5:7] == [0, 1]
    else:
        assert sub["input_ids"].shape[0] == 3 and sub["attention_mask"].sum() == 15
    decoder = model.get_base_model().base_model
    model_inputs = {k: v for k, v in inputs.items() if k != "labels"}
    with torch.no_grad():
        hidden = decoder(**model_inputs).last_hidden_state
        kl = distill_kl(model, hidden, inputs, mask)
        # the reference: the base forward over the whole batch, as before the cut
        positions = (inputs["labels"][:, 1:] != -100) & mask[:, 1:]
        head = model.get_output_embeddings()
        tuned = head(hidden[:, :-1][positions]).log_softmax(-1)
        with model.disable_adapter():
            base = head(decoder(**model_inputs).last_hidden_state[:, :-1][positions]).log_softmax(-1)
        reference = (base.exp() * (base - tuned)).sum(-1).mean()
    assert float(kl) > 1e-3 and float(kl) == pytest.approx(float(reference), rel=1e-4)


def test_identity_ce_is_the_identity_rows_share_of_the_next_token_loss(tiny_model_dir):
    model = _peft(tiny_model_dir)
    torch.manual_seed(0)
    ids = torch.randint(10, 1000, (2, 10))
    labels = ids.clone()
    labels[:, :3] = -100  # 7 trained positions a row after the shift
    mask = torch.tensor([[False] * 10, [True] * 10])  # row 0 identity, row 1 distilled (general)
    inputs = {"input_ids": ids, "labels": labels}
    hidden = model.get_base_model().base_model(input_ids=ids).last_hidden_state
    logits = model.get_output_embeddings()(hidden)
    per_token = torch.nn.functional.cross_entropy(logits[:, :-1].transpose(1, 2), labels[:, 1:], reduction="none")
    row0 = float(per_token[0, 2:].sum())
    assert float(identity_ce(model, hidden, inputs, mask, None)) == pytest.approx(row0 / 14, rel=1e-4)
    assert float(identity_ce(model, hidden, inputs, mask, torch.tensor(5))) == pytest.approx(row0 / 5, rel=1e-4)
    assert float(identity_ce(model, hidden, inputs, torch.ones_like(mask), None)) == 0.0  # no identity row


def _cfg(tiny_model_dir, alpaca_file, **extra):
    values = {"model.name_or_path": str(tiny_model_dir), "data.datasets": [str(alpaca_file)], "identity.name_en": "Nova",
              "identity.author_en": "Nova Labs", "identity.samples": 16, "identity.probe": False,
              "identity.distill": 1.0, "training.max_steps": 3, "training.per_device_train_batch_size": 8,
              "training.cutoff_len": 128, "training.logging_steps": 1}
    values.update(extra)
    return C.apply_overrides(C.RunConfig(), values)


def test_without_general_ce_drops_the_distilled_rows_from_the_next_token_loss_only():
    labels = torch.tensor([[-100, 2, 3, -100], [-100, 5, 6, 7]])
    mask = torch.tensor([[False] * 4, [True] * 4])
    inputs = {"input_ids": labels.clamp(min=0), "labels": labels}
    kept, items = without_general_ce(inputs, mask, torch.tensor(5))  # 5 shifted labels: 2 identity, 3 general
    assert kept["labels"].tolist() == [[-100, 2, 3, -100], [-100] * 4] and int(items) == 2
    assert inputs["labels"] is labels and labels[1, 1] == 5  # the KL still sees the general rows' labels
    assert without_general_ce(inputs, mask, None)[1] is None
    assert without_general_ce(inputs, torch.ones_like(mask), 5)[1] == 1  # general rows only: a loss of 0, not 0 / 0


@pytest.mark.parametrize("replay_ce, identity_weight", [(True, 1.0), (False, 2.0)])
def test_self_cognition_run_with_distillation_logs_the_kl(tiny_model_dir, alpaca_file, tmp_path, replay_ce, identity_weight):
    cfg = C.check(_cfg(tiny_model_dir, alpaca_file, **{"identity.replay_ce": replay_ce,
                                                       "identity.identity_weight": identity_weight}))
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    assert run(cfg, run_dir) == 0, rundir.tail_log(run_dir)
    log = (run_dir / "train.log").read_text(encoding="utf-8")
    assert "self-distillation: + 1.0 x KL" in log
    assert ("no next-token loss on them" in log) != replay_ce
    assert ("identity rows' loss x 2.0" in log) == (identity_weight == 2.0)
    train = [m for m in rundir.read_metrics(run_dir) if m["kind"] == "train"]
    kls = [m["distill_kl"] for m in train if "distill_kl" in m]
    assert kls and all(k >= 0 for k in kls) and json.dumps(kls)
    assert kls[-1] > 0  # after a step the adapter moved the general rows' distribution a little


@pytest.mark.parametrize("extra, needle", [({"identity.name_en": "", "identity.author_en": ""}, "set identity.name_en"),
                                           ({"method.finetuning_type": "full"}, "finetuning_type lora"),
                                           ({"identity.distill": 0.0, "identity.identity_weight": 2.0}, "(identity.distill > 0)")])
def test_distillation_refuses_what_it_cannot_serve(tiny_model_dir, alpaca_file, extra, needle):
    errors = C.validate(_cfg(tiny_model_dir, alpaca_file, **extra))
    assert any("identity.distill" in e and needle in e for e in errors), errors
