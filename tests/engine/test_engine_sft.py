"""Engine tier: a few real steps per method on a tiny random Llama; weights, metrics, status, abort, resume."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from studio import config as C
from studio.engine import rundir
from studio.engine.train.runner import run

REQUIRED_METRIC_KEYS = {"step", "epoch", "loss", "lr", "grad_norm", "tokens_per_s", "elapsed", "eta"}


def make_cfg(tiny_model_dir, data, **overrides) -> C.RunConfig:
    base = {"model.name_or_path": str(tiny_model_dir), "data.datasets": [str(data)], "training.max_steps": 3,
            "training.per_device_train_batch_size": 4, "training.learning_rate": 5e-3, "training.cutoff_len": 128,
            "training.logging_steps": 1}
    base.update(overrides)
    return C.check(C.apply_overrides(C.RunConfig(), base))


def weights(model_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(str(model_dir / "model.safetensors"))


def train_ok(cfg, run_dir: Path, resume: bool = False) -> dict:
    assert run(cfg, run_dir, resume=resume) == 0, rundir.tail_log(run_dir)
    return rundir.read_status(run_dir)


def test_lora_trains_adapter_only_and_writes_the_run_folder(tiny_model_dir, alpaca_file, tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    status = train_ok(make_cfg(tiny_model_dir, alpaca_file), run_dir)
    assert status["state"] == "finished" and status["exit_code"] == 0 and status["step"] == 3
    adapter = load_file(str(run_dir / "adapter" / "adapter_model.safetensors"))
    lora_b = [v for k, v in adapter.items() if "lora_B" in k]
    assert lora_b and all(v.abs().sum() > 0 for v in lora_b)  # B starts at zero: non-zero means it trained
    assert (run_dir / "config.yaml").is_file() and (run_dir / "train.log").stat().st_size > 0
    lines = rundir.read_metrics(run_dir)
    train_lines = [m for m in lines if m["kind"] == "train"]
    assert [m["step"] for m in train_lines] == [1, 2, 3]
    for m in train_lines:
        assert REQUIRED_METRIC_KEYS <= set(m), set(m)
        assert m["loss"] > 0 and m["tokens_per_s"] > 0
    report = json.loads((run_dir / "data_report.json").read_text())
    assert report["train_rows"] == 24 and report["truncated_rows"] == 0


@pytest.mark.parametrize("kind", ["freeze", "full"])
def test_freeze_and_full_change_exactly_the_intended_weights(tiny_model_dir, alpaca_file, tmp_path, kind):
    run_dir = tmp_path / kind
    run_dir.mkdir()
    cfg = make_cfg(tiny_model_dir, alpaca_file, **{"method.finetuning_type": kind, "freeze.trainable_layers": 1})
    train_ok(cfg, run_dir)
    before, after = weights(tiny_model_dir), weights(run_dir / "model")
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    if kind == "freeze":
        assert changed and all(".layers.1." in k for k in changed), changed
    else:
        assert any(".layers.0." in k for k in changed) and any("embed_tokens" in k for k in changed)


def test_qlora_4bit_trains_on_this_machine(tiny_model_dir, alpaca_file, tmp_path):
    pytest.importorskip("bitsandbytes")
    run_dir = tmp_path / "q"
    run_dir.mkdir()
    cfg = make_cfg(tiny_model_dir, alpaca_file, **{"method.finetuning_type": "qlora", "training.max_steps": 2})
    assert train_ok(cfg, run_dir)["state"] == "finished"
    assert (run_dir / "adapter" / "adapter_model.safetensors").is_file()


def test_stop_file_aborts_with_usable_adapter_then_resume_continues(tiny_model_dir, alpaca_file, tmp_path):
    run_dir = tmp_path / "stop"
    run_dir.mkdir()
    cfg = make_cfg(tiny_model_dir, alpaca_file, **{"training.max_steps": 6})

    from studio.engine.train import callbacks

    original = callbacks.RunFolderCallback.on_step_end

    def stop_after_two(self, args, state, control, **kw):  # the STOP file appears while step 2 runs
        if state.global_step == 2:
            rundir.request_stop(self.run_dir)
        return original(self, args, state, control, **kw)

    callbacks.RunFolderCallback.on_step_end = stop_after_two
    try:
        status = train_ok(cfg, run_dir)
    finally:
        callbacks.RunFolderCallback.on_step_end = original
    assert status["state"] == "aborted" and status["step"] == 2 and status["stop_reason"] == "STOP file"
    assert (run_dir / "adapter" / "adapter_model.safetensors").is_file()
    assert (run_dir / "checkpoints" / "checkpoint-2").is_dir()
    from studio.engine.generate import ChatModel

    assert ChatModel(str(tiny_model_dir), run_dir).generate([[{"role": "user", "content": "hi"}]], use_adapter=True,
                                                            max_new_tokens=3)
    status = train_ok(cfg, run_dir, resume=True)
    assert status["state"] == "finished" and status["step"] == 6
    steps = [m["step"] for m in rundir.read_metrics(run_dir) if m["kind"] == "train"]
    assert steps == [1, 2, 3, 4, 5, 6]


def test_padding_free_batches_give_the_padded_loss(tiny_model_dir, alpaca_file, tmp_path):
    losses = {}
    for mode in ("padding_free", "padded"):
        run_dir = tmp_path / mode
        run_dir.mkdir()
        cfg = make_cfg(tiny_model_dir, alpaca_file, **{"training.batching": mode, "training.max_steps": 1,
                                                         "training.per_device_train_batch_size": 24,
                                                         "training.frozen_dtype": "float32"})
        train_ok(cfg, run_dir)
        losses[mode] = rundir.read_metrics(run_dir)[0]["loss"]
    assert losses["padding_free"] == pytest.approx(losses["padded"], rel=1e-4)


def test_val_split_logs_eval_loss_and_keeps_best(tiny_model_dir, alpaca_file, tmp_path):
    run_dir = tmp_path / "eval"
    run_dir.mkdir()
    cfg = make_cfg(tiny_model_dir, alpaca_file, **{"data.val_size": 4, "training.eval_steps": 2, "training.max_steps": 4})
    status = train_ok(cfg, run_dir)
    evals = [m for m in rundir.read_metrics(run_dir) if m["kind"] == "eval"]
    assert [m["step"] for m in evals] == [0, 2, 4] and all(m["eval_loss"] > 0 for m in evals)  # step 0: the base model
    assert status["best_eval_loss"] == min(m["eval_loss"] for m in evals[1:])  # the best checkpoint is a trained one
    assert status["best_checkpoint"]


def test_bad_data_fails_with_file_and_row(tiny_model_dir, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"instruction": "a", "output": "b"}\n{"instruction": "a"}\n')
    run_dir = tmp_path / "r"
    run_dir.mkdir()
    assert run(make_cfg(tiny_model_dir, bad), run_dir) == 1
    status = rundir.read_status(run_dir)
    assert status["state"] == "failed" and status["exit_code"] == 1
    assert f"{bad}: row 2: missing or empty 'output'" in status["error"]
