"""CLI tier: the `studio` commands as a user types them (subprocesses), and the DDP entry point under accelerate."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from studio.engine import rundir

ROOT = Path(__file__).resolve().parents[2]


def studio(*args, timeout=600, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "studio", *map(str, args)], capture_output=True, text=True, cwd=ROOT,
                          timeout=timeout, env={**os.environ, **(env or {})})


def tiny_sets(tiny_model_dir, data, steps=2) -> list[str]:
    sets = [f"model.name_or_path={tiny_model_dir}", f"data.datasets=[{data}]", f"training.max_steps={steps}",
            "training.per_device_train_batch_size=4", "training.cutoff_len=96"]
    return [a for s in sets for a in ("--set", s)]


def test_help_does_not_import_torch():
    code = "import sys; from studio.cli import build_parser; build_parser(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "False"
    assert "train" in studio("--help").stdout


def test_bad_config_is_named_and_nothing_starts(tmp_path):
    res = studio("train", "presets/sft_lora.yaml", "--set", "training.learning_rate=-1", "--set", "lora.r=0",
                 "--output-dir", tmp_path / "run")
    assert res.returncode == 2
    assert "training.learning_rate=-1.0: must be > 0.0 and <= 1.0" in res.stderr
    assert "lora.r=0: must be >= 1 and <= 1024" in res.stderr
    assert not (tmp_path / "run").exists()
    res = studio("train", "presets/nope.yaml")
    assert res.returncode == 2 and "presets/nope.yaml: config file not found" in res.stderr


def test_train_prints_run_folder_then_chat_answers_json(tiny_model_dir, alpaca_file, tmp_path):
    res = studio("train", *tiny_sets(tiny_model_dir, alpaca_file), "--set", f"output.runs_dir={tmp_path}")
    assert res.returncode == 0, res.stderr[-2000:]
    run_dir = Path(res.stdout.strip().splitlines()[-1])
    assert run_dir.parent == tmp_path and rundir.read_status(run_dir)["state"] == "finished"
    assert "studio train" in (run_dir / "command.txt").read_text()
    # training.allocator=keep (the default): the process re-executed itself with glibc told to keep freed memory, and says so
    log = (run_dir / "train.log").read_text(encoding="utf-8").splitlines()
    assert "allocator: glibc keeps freed memory" in log
    # training.row_attention_backward=matmul (the default) on this CPU: the run says which attention backward it took
    assert any(line.startswith("speed: per-row attention (short rows' backward as matmuls)") for line in log), log
    again = studio("train", run_dir / "config.yaml", "--output-dir", run_dir)
    assert again.returncode == 2 and "already holds a finished run" in again.stderr

    prompts = tmp_path / "prompts.txt"
    prompts.write_text("Say the number 3.\n你好\n", encoding="utf-8")
    res = studio("chat", "--model", tiny_model_dir, "--adapter", run_dir, "--prompts-file", prompts, "--json",
                 "--max-new-tokens", "4")
    assert res.returncode == 0, res.stderr[-2000:]
    rows = [json.loads(line) for line in res.stdout.strip().splitlines()]
    assert [r["prompt"] for r in rows] == ["Say the number 3.", "你好"]
    assert all(isinstance(r["answer"], str) for r in rows)


def test_chat_with_missing_adapter_is_a_clear_error(tmp_path):
    res = studio("chat", "--adapter", tmp_path / "nope", "--prompt", "hi")
    assert res.returncode == 2 and "no such folder" in res.stderr and "Traceback" not in res.stderr


def test_two_process_ddp_with_gloo(tiny_model_dir, alpaca_file, tmp_path):
    pytest.importorskip("accelerate")
    run_dir = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(ROOT / "assets/accelerate/cpu_ddp.yaml"),
           "-m", "studio.train", "--output-dir", str(run_dir), *tiny_sets(tiny_model_dir, alpaca_file, steps=3)]
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=900,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert res.returncode == 0, (res.stdout + res.stderr)[-3000:]
    status = rundir.read_status(run_dir)
    assert status["state"] == "finished" and status["world_size"] == 2 and status["step"] == 3
    steps = [m["step"] for m in rundir.read_metrics(run_dir) if m["kind"] == "train"]
    assert steps == [1, 2, 3]  # one writer: rank 0
    assert (run_dir / "adapter" / "adapter_model.safetensors").is_file()


def test_train_with_two_processes_launches_accelerate_itself(tiny_model_dir, alpaca_file, tmp_path):
    """``studio train --set distributed.num_processes=2``: the CLI writes the accelerate config into the run folder and
    runs the same ``accelerate launch`` the studio's queue starts."""
    pytest.importorskip("accelerate")
    res = studio("train", *tiny_sets(tiny_model_dir, alpaca_file), "--set", "distributed.num_processes=2",
                 "--set", f"output.runs_dir={tmp_path}")
    assert res.returncode == 0, (res.stdout + res.stderr)[-3000:]
    run_dir = Path(res.stdout.strip().splitlines()[-1])
    status = rundir.read_status(run_dir)
    assert status["state"] == "finished" and status["world_size"] == 2 and status["step"] == 2
    command = (run_dir / "command.txt").read_text().split()
    assert command[1:4] == ["-m", "accelerate.commands.launch", f"--config_file={run_dir / 'accelerate.yaml'}"]
    assert f"launching 2 processes: {' '.join(command)}" in res.stdout


def test_launch_problems_are_named_before_anything_starts(tmp_path):
    res = studio("train", "presets/sft_lora.yaml", "--set", "distributed.backend=fsdp", "--set", "distributed.devices=cpu",
                 "--set", "distributed.num_processes=2", "--output-dir", tmp_path / "run")
    assert res.returncode == 2 and "distributed.backend=fsdp: needs GPUs" in res.stderr and "Traceback" not in res.stderr
    assert not (tmp_path / "run").exists()
