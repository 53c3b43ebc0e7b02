"""Slow tier: the real embedded default model (SmolLM2-135M-Instruct) converted, trained a few steps, and chatted with."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from studio import config as C
from studio.engine import rundir
from studio.engine.train.runner import run

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def test_default_model_is_converted_trainable_and_plain(default_model_dir):
    cfg = json.loads((default_model_dir / "config.json").read_text())
    assert "quantization_config" not in cfg  # the GGUF quantization config is dropped, or Trainer refuses to train
    assert cfg["model_type"] == "llama" and cfg["num_hidden_layers"] == 30
    assert (default_model_dir / "model.safetensors").is_file()
    template = (default_model_dir / "chat_template.jinja").read_text()
    assert "<|im_start|>" in template


def test_preset_trains_the_default_model_and_the_adapter_answers(default_model_dir, tmp_path):
    # 4 rows, batch 4: every step sees the same rows, so the step losses are comparable
    cfg = C.check(C.load(ROOT / "presets" / "sft_lora.yaml", [f"data.datasets=[{ROOT}/assets/data/demo_sft.jsonl@4]",
                                                               "training.max_steps=4", "training.per_device_train_batch_size=4",
                                                               "training.cutoff_len=128", "training.learning_rate=1e-3"]))
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    assert run(cfg, run_dir) == 0, rundir.tail_log(run_dir)
    lines = [m for m in rundir.read_metrics(run_dir) if m["kind"] == "train"]
    assert len(lines) == 4 and all(m["tokens_per_s"] > 0 for m in lines)
    assert lines[-1]["loss"] < lines[0]["loss"]  # four steps at lr 1e-3 on the same 4 rows: the loss goes down

    from studio.engine.generate import ChatModel

    chat = ChatModel("default", run_dir)
    base, tuned = (chat.generate([[{"role": "user", "content": "What is the capital of France?"}]], use_adapter=flag,
                                 max_new_tokens=12)[0] for flag in (False, True))
    assert "Paris" in base
    assert isinstance(tuned, str) and tuned
