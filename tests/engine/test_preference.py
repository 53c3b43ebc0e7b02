"""Preference data, reward model, DPO and KTO: format round trips and named errors (unit), then a few real steps of each
method on a tiny random Llama with a learnable synthetic preference (engine), and the shipped presets (config)."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from studio import config as C
from studio.engine import rundir
from studio.engine.data.load import DataError, load_dataset_spec
from studio.engine.data.formats import (detect_format, detect_kto_format, detect_preference_format, normalize_kto_row,
                                       normalize_preference_row)
from studio.engine.data.preference import load_records
from studio.engine.train.runner import run
from tests.helpers import write_jsonl

ROOT = Path(__file__).resolve().parents[2]
U = [{"role": "user", "content": "Hi?"}]
GOOD, BAD = [{"role": "assistant", "content": "Hello! How can I help?"}], [{"role": "assistant", "content": "What."}]


# ----------------------------------------------------------------------------------------------------------------------------
# Formats


@pytest.mark.parametrize("row, fmt", [
    ({"prompt": "Hi?", "chosen": "Hello! How can I help?", "rejected": "What."}, "pref_prompt"),
    ({"prompt": U, "chosen": GOOD, "rejected": BAD}, "pref_prompt"),
    ({"chosen": U + GOOD, "rejected": U + BAD}, "pref_implicit"),
    ({"instruction": "Hi?", "input": "", "chosen": "Hello! How can I help?", "rejected": "What."}, "pref_alpaca"),
    ({"conversations": [{"from": "human", "value": "Hi?"}], "chosen": {"from": "gpt", "value": "Hello! How can I help?"},
      "rejected": {"from": "gpt", "value": "What."}}, "pref_sharegpt"),
])
def test_every_preference_format_normalizes_to_trl_conversational_pairs(row, fmt):
    fs = detect_preference_format(row)
    assert fs.format == fmt
    assert normalize_preference_row(row, fs) == {"prompt": U, "chosen": GOOD, "rejected": BAD}
    with pytest.raises(DataError, match="preference data"):  # SFT keeps refusing it
        detect_format(row)
    pair = normalize_kto_row(row, detect_kto_format(row))  # KTO splits a pair into a desirable and an undesirable row
    assert pair == [{"prompt": U, "completion": GOOD, "label": True}, {"prompt": U, "completion": BAD, "label": False}]


@pytest.mark.parametrize("row, fmt", [
    ({"prompt": "Hi?", "completion": "What.", "label": False}, "kto"),
    ({"prompt": U, "completion": BAD, "label": "false"}, "kto"),
    ({"instruction": "Hi?", "input": "", "output": "What.", "kto_tag": 0}, "kto_alpaca"),
    ({"messages": U + BAD, "label": False}, "kto_sharegpt"),
])
def test_unpaired_kto_rows_normalize_and_sft_refuses_them(row, fmt):
    fs = detect_kto_format(row)
    assert fs.format == fmt
    assert normalize_kto_row(row, fs) == [{"prompt": U, "completion": BAD, "label": False}]
    with pytest.raises(DataError, match="KTO"):
        detect_format(row)


def test_system_prompt_and_multi_turn_prompt_are_kept():
    row = {"system": "Be kind.", "prompt": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"},
                                            {"role": "user", "content": "c"}], "chosen": "good", "rejected": "bad"}
    out = normalize_preference_row(row, detect_preference_format(row))
    assert [m["role"] for m in out["prompt"]] == ["system", "user", "assistant", "user"]
    assert out["prompt"][0]["content"] == "Be kind."
    row = {"chosen": U + GOOD, "rejected": [{"role": "user", "content": "Other?"}] + BAD}
    with pytest.raises(DataError, match="same conversation up to a last user message"):
        normalize_preference_row(row, detect_preference_format(row))


@pytest.mark.parametrize("row, reason", [
    ({"prompt": "Hi?", "chosen": "same", "rejected": "same"}, "identical"),
    ({"prompt": "Hi?", "chosen": "", "rejected": "no"}, "'chosen' is empty"),
    ({"prompt": "Hi?", "chosen": 3, "rejected": "no"}, "'chosen' must be text or a non-empty list"),
    ({"prompt": [{"role": "robot", "content": "x"}], "chosen": "a", "rejected": "b"}, "unknown role 'robot'"),
    ({"chosen": U + GOOD, "rejected": U + BAD}, "'prompt' must be text"),  # the file's format comes from its first row
    ({"prompt": U + GOOD, "chosen": "a", "rejected": "b"}, "must end with a user message"),
])
def test_bad_preference_rows_name_file_row_and_reason(tmp_path, row, reason):
    good = {"prompt": "Hi?", "chosen": "Hello!", "rejected": "No."}
    path = write_jsonl(tmp_path / "pairs.jsonl", [good, good, row])
    with pytest.raises(DataError, match=rf"pairs\.jsonl: row 3: .*{reason}"):
        load_records(str(path), "preference")
    recs, line, skipped = load_records(str(path), "preference", on_bad_row="skip")
    assert len(recs) == 2 and line["skipped"] == 1 and "row 3" in skipped[0]


def test_bad_kto_label_and_wrong_kind_are_named(tmp_path):
    path = write_jsonl(tmp_path / "kto.jsonl", [{"prompt": "a", "completion": "b", "label": "maybe"}])
    with pytest.raises(DataError, match=r"kto\.jsonl: row 1: 'label' must be true .* got 'maybe'"):
        load_records(str(path), "kto")
    sft = write_jsonl(tmp_path / "sft.jsonl", [{"instruction": "a", "output": "b"}])
    with pytest.raises(DataError, match=r"sft\.jsonl: not preference data"):
        load_records(str(sft), "preference")


def test_shipped_demo_data_is_bilingual_and_registered():
    pairs, line, _ = load_records(str(ROOT / "assets/data#demo_preference"), "preference")
    assert line["format"] == "pref_alpaca" and len(pairs) >= 60
    zh = [p for p in pairs if any("\u4e00" <= ch <= "\u9fff" for ch in p["prompt"][-1]["content"])]
    assert 0.3 < len(zh) / len(pairs) < 0.7
    # the preference is learnable from the text: chosen answers are the longer, complete ones
    assert sum(len(p["chosen"][0]["content"]) > len(p["rejected"][0]["content"]) for p in pairs) == len(pairs)
    kto, line, _ = load_records(str(ROOT / "assets/data#demo_kto"), "kto")
    assert len(kto) == 2 * len(pairs) and sum(r["label"] for r in kto) == len(pairs)
    info = json.loads((ROOT / "assets/data/dataset_info.json").read_text(encoding="utf-8"))
    assert info["demo_preference"]["ranking"] is True and info["demo_kto"]["columns"]["kto_tag"] == "label"
    assert load_dataset_spec(str(ROOT / "assets/data")).format == "alpaca"  # SFT takes only the SFT entries of the folder
    with pytest.raises(DataError, match="use it with DPO or reward modelling"):
        load_dataset_spec(str(ROOT / "assets/data#demo_preference"))


# ----------------------------------------------------------------------------------------------------------------------------
# Config and presets


@pytest.mark.parametrize("name, stage", [("dpo", "dpo"), ("kto", "kto"), ("reward_model", "rm")])
def test_presets_load_validate_and_document_their_command(name, stage):
    path = ROOT / "presets" / f"{name}.yaml"
    cfg = C.check(C.load(path))
    assert cfg.method.stage == stage and cfg.model.name_or_path == "default"
    assert f"studio train presets/{name}.yaml" in path.read_text(encoding="utf-8").split("\nmodel:")[0]
    assert all(Path(d.split("#")[0]).exists() for d in cfg.data.datasets)


def test_preference_config_is_validated():
    cfg = C.apply_overrides(C.RunConfig(), {"data.datasets": ["x"], "method.stage": "dpo", "preference.loss_type": "nope"})
    assert any("preference.loss_type='nope'" in e and "sigmoid" in e for e in C.validate(cfg))
    cfg = C.apply_overrides(C.RunConfig(), {"data.datasets": ["x"], "method.stage": "rm", "method.finetuning_type": "qlora"})
    assert any("not available for stage rm" in e for e in C.validate(cfg))
    cfg = C.apply_overrides(C.RunConfig(), {"data.datasets": ["x"], "method.stage": "kto",
                                            "training.per_device_train_batch_size": 1})
    assert any("KTO needs >= 2" in e for e in C.validate(cfg))
    assert C.validate(C.apply_overrides(C.RunConfig(), {"data.datasets": ["x"], "method.stage": "dpo",
                                                        "preference.loss_type": "ipo", "preference.beta": 0.5})) == []


# ----------------------------------------------------------------------------------------------------------------------------
# Engine: a learnable synthetic preference on a tiny model

WORDS = ["apple", "river", "stone", "cloud", "green", "music", "table", "light", "paper", "ocean", "bread", "chair"]


def marker_pairs(n: int, seed: int = 0) -> list[dict]:
    """Chosen answers contain 'thanks' somewhere, rejected ones 'sorry'; otherwise independent random words."""
    rng = random.Random(seed)

    def answer(marker: str) -> str:
        words = [rng.choice(WORDS) for _ in range(5)]
        words.insert(rng.randrange(6), marker)
        return " ".join(words)

    return [{"prompt": f"Say something about the {rng.choice(WORDS)}.", "chosen": answer("thanks"),
             "rejected": answer("sorry")} for _ in range(n)]


def make_cfg(model_dir, data: Path, stage: str, **overrides) -> C.RunConfig:
    base = {"model.name_or_path": str(model_dir), "data.datasets": [str(data)], "method.stage": stage,
            "training.per_device_train_batch_size": 4, "training.learning_rate": 5e-3, "training.cutoff_len": 64,
            "training.logging_steps": 1, "training.max_steps": 3}
    base.update(overrides)
    return C.check(C.apply_overrides(C.RunConfig(), base))


def train_ok(cfg, run_dir: Path) -> dict:
    run_dir.mkdir()
    assert run(cfg, run_dir) == 0, rundir.tail_log(run_dir)
    return rundir.read_status(run_dir)


def test_dpo_raises_the_margin_and_accuracy_on_its_pairs(tiny_model_dir, tmp_path):
    data = write_jsonl(tmp_path / "pairs.jsonl", marker_pairs(12))
    status = train_ok(make_cfg(tiny_model_dir, data, "dpo", **{"training.max_steps": 4}), tmp_path / "dpo")
    train = [m for m in rundir.read_metrics(tmp_path / "dpo") if m.get("kind") == "train"]
    assert {"rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies"} <= set(train[0])
    # step 1 is logged from the forward pass before any update: policy == reference (adapter B = 0), margin exactly 0
    assert train[0]["rewards/margins"] == 0 and status["margin_first"] == 0
    late = train[-2:]
    assert sum(m["rewards/margins"] for m in late) / 2 > 0.005
    assert sum(m["rewards/accuracies"] for m in late) / 2 >= 0.75
    # evaluated afresh on every training pair: the implicit reward ranks chosen above rejected
    margins = implicit_margins(tiny_model_dir, tmp_path / "dpo" / "adapter", read_pairs(data), beta=0.1)
    assert sum(margins) / len(margins) > 0.005 and sum(m > 0 for m in margins) / len(margins) >= 0.75


def read_pairs(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def implicit_margins(model_dir, adapter_dir, pairs, beta: float) -> list[float]:
    """beta * [(log pi - log ref)(chosen) - (log pi - log ref)(rejected)] per pair, ref = the adapter switched off."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(model_dir), adapter_dir).eval()

    def logp(prompt: str, answer: str) -> float:
        msgs = [{"role": "user", "content": prompt}]
        head = tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
        full = tok.apply_chat_template(msgs + [{"role": "assistant", "content": answer}], tokenize=False)
        ids = tok(full, return_tensors="pt", add_special_tokens=False).input_ids
        n = len(tok(head, add_special_tokens=False).input_ids)
        with torch.no_grad():
            logits = model(ids).logits[0, :-1].log_softmax(-1)
        return logits[n - 1:].gather(-1, ids[0, n:, None]).sum().item()

    out = []
    for p in pairs:
        tuned = logp(p["prompt"], p["chosen"]) - logp(p["prompt"], p["rejected"])
        with model.disable_adapter():
            ref = logp(p["prompt"], p["chosen"]) - logp(p["prompt"], p["rejected"])
        out.append(beta * (tuned - ref))
    return out


def test_kto_trains_a_few_steps_and_logs_rewards_and_kl(tiny_model_dir, tmp_path):
    rows = [{"prompt": p["prompt"], "completion": p[k], "label": k == "chosen"} for p in marker_pairs(8) for k in
            ("chosen", "rejected")]
    data = write_jsonl(tmp_path / "kto.jsonl", rows)
    status = train_ok(make_cfg(tiny_model_dir, data, "kto"), tmp_path / "kto")
    assert status["state"] == "finished" and status["step"] == 3
    train = [m for m in rundir.read_metrics(tmp_path / "kto") if m.get("kind") == "train"]
    assert len(train) == 3 and all({"kl", "loss"} <= set(m) for m in train)
    # a batch holds desirable and/or undesirable rows: each reward is logged when its kind is in the batch
    assert any("rewards/chosen" in m for m in train) and any("rewards/rejected" in m for m in train)
    assert (tmp_path / "kto" / "adapter" / "adapter_model.safetensors").is_file()
    assert json.loads((tmp_path / "kto" / "data_report.json").read_text())["desirable"] == 8


def test_reward_model_learns_held_out_pairs_and_saves_a_plain_folder(tiny_model_dir, tmp_path):
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from studio.engine.train.reward_model import score

    data = write_jsonl(tmp_path / "pairs.jsonl", marker_pairs(96, seed=1))
    cfg = make_cfg(tiny_model_dir, data, "rm", **{"data.val_size": 24, "training.max_steps": 40,
                                                  "training.per_device_train_batch_size": 8, "lora.r": 16})
    status = train_ok(cfg, tmp_path / "rm")
    assert status["eval_accuracy"] >= 0.85, status  # chance is 0.5
    lines = rundir.read_metrics(tmp_path / "rm")
    assert any("eval_accuracy" in m and m["step"] == 0 for m in lines) and any("accuracy" in m for m in lines)
    out = tmp_path / "rm" / "reward_model"
    assert {p.suffix for p in out.iterdir()} >= {".safetensors", ".json"} and not list(out.glob("*.bin"))
    model = AutoModelForSequenceClassification.from_pretrained(out, use_safetensors=True).eval()
    tok = AutoTokenizer.from_pretrained(out)
    assert model.config.pad_token_id == tok.pad_token_id is not None and model.config.num_labels == 1
    assert not any("lora" in n for n, _ in model.named_parameters())  # merged
    pairs = marker_pairs(24, seed=2)  # fresh pairs the model never saw
    conv = lambda p, k: [{"role": "user", "content": p["prompt"]}, {"role": "assistant", "content": p[k]}]  # noqa: E731
    chosen = score(model, tok, [conv(p, "chosen") for p in pairs])
    rejected = score(model, tok, [conv(p, "rejected") for p in pairs])
    assert sum(c > r for c, r in zip(chosen, rejected)) / len(pairs) >= 0.85
    assert torch.tensor(chosen).mean() > torch.tensor(rejected).mean()
