"""Unit tier: the ``distributed`` config section and what the studio checks and writes before ``accelerate launch``
(studio/engine/jobs/distributed.py), with made-up GPUs: no torch, no process started. Run:
``pytest tests/unit/test_launch_checks.py``."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import yaml

from studio import config as C
from studio.engine.jobs import distributed as D
from studio.engine.jobs import training as jobs

NO_GPU: tuple = ()
TWO_GPUS = (D.Gpu("0", "NVIDIA H100", 81559), D.Gpu("1", "NVIDIA H100", 81559))


def cfg(**over) -> C.RunConfig:
    return C.apply_overrides(C.RunConfig(), {"data.datasets": ["x.jsonl"], **over})


@pytest.fixture(autouse=True)
def cores(monkeypatch):
    monkeypatch.setattr(D, "cpu_cores", lambda: 4)
    monkeypatch.setattr(D, "deepspeed_installed", lambda: False)  # as on this machine: named, never imported


def only(errors: list[str], *fragments: str) -> None:
    """Exactly one error, holding every fragment (the key first)."""
    assert len(errors) == 1, errors
    for f in fragments:
        assert f in errors[0], errors[0]


def test_defaults_are_one_process_without_launcher():
    c = cfg()
    assert C.validate(c) == [] and D.problems(c, NO_GPU) == []
    assert not D.needs_launcher(c) and D.world_size(c) == 1
    assert jobs.job_argv(Path("/r"), c, "py") == ["py", "-m", "studio.train", "/r/config.yaml", "--output-dir=/r"]


def test_section_bounds_are_named():
    errors = C.validate(cfg(**{"distributed.num_processes": 0, "distributed.backend": "horovod",
                               "distributed.main_process_port": 70000}))
    text = "\n".join(errors)
    assert "distributed.num_processes=0: must be >= 1" in text
    assert "distributed.backend='horovod': must be one of ddp, deepspeed_zero2, deepspeed_zero3, fsdp" in text
    assert "distributed.main_process_port=70000: must be >= 0 and <= 65535" in text


def test_more_processes_than_devices():
    only(D.problems(cfg(**{"distributed.num_processes": 5}), NO_GPU),
         "distributed.num_processes=5: more processes than devices", "4 CPU cores")
    only(D.problems(cfg(**{"distributed.num_processes": 3}), TWO_GPUS),
         "distributed.num_processes=3: more processes than devices (devices=auto: 2 GPU(s)")
    only(D.problems(cfg(**{"distributed.num_processes": 2, "distributed.devices": "1"}), TWO_GPUS),
         "distributed.num_processes=2: more processes than devices (devices=1: 1 GPU(s))")
    only(D.problems(cfg(**{"distributed.devices": "0,1"}), TWO_GPUS), "distributed.devices='0,1': 2 GPUs for 1 process")
    only(D.problems(cfg(**{"distributed.devices": "0,7", "distributed.num_processes": 2}), TWO_GPUS),
         "distributed.devices='0,7': no GPU 7 on this machine (detected: 0, 1)")
    only(D.problems(cfg(**{"distributed.devices": "gpu"}), TWO_GPUS), "distributed.devices='gpu': use auto, cpu or")
    assert D.problems(cfg(**{"distributed.num_processes": 4}), NO_GPU) == []
    assert D.problems(cfg(**{"distributed.num_processes": 2, "distributed.devices": "1,0"}), TWO_GPUS) == []


def test_backend_not_installed_or_on_cpu_is_named(monkeypatch):
    errors = D.problems(cfg(**{"distributed.backend": "deepspeed_zero2", "distributed.num_processes": 2}), TWO_GPUS)
    only(errors, "distributed.backend=deepspeed_zero2: DeepSpeed is not installed here")
    errors = D.problems(cfg(**{"distributed.backend": "fsdp", "distributed.num_processes": 2}), NO_GPU)
    only(errors, "distributed.backend=fsdp: needs GPUs", "fall back to plain DDP")
    monkeypatch.setattr(D, "fsdp_installed", lambda: False)
    only(D.problems(cfg(**{"distributed.backend": "fsdp", "distributed.num_processes": 2}), TWO_GPUS),
         "distributed.backend=fsdp: this torch has no torch.distributed.fsdp")
    only(D.problems(cfg(**{"distributed.mixed_precision": "fp16"}), NO_GPU), "distributed.mixed_precision=fp16: needs a GPU")


def test_backend_that_does_not_apply_to_the_method_says_which(monkeypatch):
    monkeypatch.setattr(D, "deepspeed_installed", lambda: True)
    only(D.problems(cfg(**{"method.stage": "ppo", "distributed.num_processes": 2}), NO_GPU),
         "method.stage=ppo", "the studio's own PPO loop runs in one process", "use grpo or rloo")
    only(D.problems(cfg(**{"method.finetuning_type": "qlora", "distributed.backend": "deepspeed_zero3",
                           "distributed.num_processes": 2}), TWO_GPUS),
         "distributed.backend=deepspeed_zero3 does not apply to method.finetuning_type=qlora")
    only(D.problems(cfg(**{"method.stage": "rm", "distributed.backend": "fsdp", "distributed.num_processes": 2}),
                    TWO_GPUS), "distributed.backend=fsdp does not apply to method.stage=rm")
    assert D.problems(cfg(**{"method.finetuning_type": "qlora", "distributed.backend": "deepspeed_zero2",
                             "distributed.num_processes": 2}), TWO_GPUS) == []
    assert D.problems(cfg(**{"method.stage": "grpo", "rl.reward_funcs": ["length:20"], "distributed.num_processes": 2}),
                      NO_GPU) == []


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_several_machines_need_a_reachable_main_address():
    two = {"distributed.num_machines": 2, "distributed.num_processes": 1}
    only(D.problems(cfg(**two, **{"distributed.machine_rank": 1}), NO_GPU), "distributed.main_process_ip: needed with "
         "num_machines=2")
    only(D.problems(cfg(**two, **{"distributed.machine_rank": 2, "distributed.main_process_ip": "127.0.0.1"}), NO_GPU),
         "distributed.machine_rank=2: must be below num_machines=2")
    only(D.problems(cfg(**{"distributed.machine_rank": 1}), NO_GPU), "distributed.machine_rank=1: must be 0 with "
         "num_machines=1")
    port = _free_port()  # nobody listens there: a worker machine cannot reach its main machine
    only(D.problems(cfg(**two, **{"distributed.machine_rank": 1, "distributed.main_process_ip": "127.0.0.1",
                                  "distributed.main_process_port": port}), NO_GPU),
         "distributed.main_process_ip='127.0.0.1'", f"127.0.0.1:{port} is not reachable", "start machine_rank 0 first")
    only(D.problems(cfg(**two, **{"distributed.main_process_ip": "no-such-host.invalid"}), NO_GPU),
         "distributed.main_process_ip='no-such-host.invalid': does not resolve")
    only(D.problems(cfg(**two, **{"distributed.main_process_ip": "192.0.2.7"}), NO_GPU),  # TEST-NET: never ours
         "not an address of this machine, and machine_rank=0 is the main machine")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        only(D.problems(cfg(**two, **{"distributed.main_process_ip": "127.0.0.1", "distributed.main_process_port": taken}),
                        NO_GPU), f"distributed.main_process_port={taken}: cannot listen")
        ok = cfg(**two, **{"distributed.machine_rank": 1, "distributed.main_process_ip": "127.0.0.1",
                           "distributed.main_process_port": taken})
        assert D.problems(ok, NO_GPU) == []  # the main machine listens: reachable
    only(D.problems(cfg(**two, **{"distributed.main_process_ip": "127.0.0.1", "distributed.main_process_port": 0}),
                    NO_GPU), "distributed.main_process_port=0: several machines need a fixed port")


def test_accelerate_config_per_backend(monkeypatch):
    base = {"distributed.num_processes": 2, "training.gradient_accumulation_steps": 4, "training.max_grad_norm": 0.5}
    ddp = D.accelerate_config(cfg(**base), NO_GPU)
    assert ddp["distributed_type"] == "MULTI_GPU" and ddp["num_processes"] == 2 and ddp["mixed_precision"] == "no"
    assert "gpu_ids" not in ddp and "main_process_ip" not in ddp
    gpu = D.accelerate_config(cfg(**base, **{"distributed.devices": "1,0", "distributed.mixed_precision": "bf16"}), TWO_GPUS)
    assert gpu["gpu_ids"] == "1,0" and gpu["mixed_precision"] == "bf16"
    z3 = D.accelerate_config(cfg(**base, **{"distributed.backend": "deepspeed_zero3"}), TWO_GPUS)
    assert z3["distributed_type"] == "DEEPSPEED" and z3["gpu_ids"] == "0,1"
    assert z3["deepspeed_config"]["zero_stage"] == 3 and z3["deepspeed_config"]["gradient_accumulation_steps"] == 4
    assert z3["deepspeed_config"]["gradient_clipping"] == 0.5 and z3["deepspeed_config"]["zero3_save_16bit_model"]
    assert D.accelerate_config(cfg(**base, **{"distributed.backend": "deepspeed_zero2"}), TWO_GPUS)[
        "deepspeed_config"]["zero_stage"] == 2
    fsdp = D.accelerate_config(cfg(**base, **{"distributed.backend": "fsdp"}), TWO_GPUS)
    assert fsdp["distributed_type"] == "FSDP" and fsdp["fsdp_config"]["fsdp_state_dict_type"] == "FULL_STATE_DICT"
    mm = D.accelerate_config(cfg(**{"distributed.num_processes": 2, "distributed.num_machines": 3,
                                    "distributed.machine_rank": 2, "distributed.main_process_ip": "10.0.0.1"}), NO_GPU)
    assert mm["num_processes"] == 6 and mm["num_machines"] == 3 and mm["machine_rank"] == 2  # accelerate's is the total
    assert mm["main_process_ip"] == "10.0.0.1"


def test_launch_command_and_written_config(tmp_path, monkeypatch):
    monkeypatch.setattr(D, "detect_gpus", lambda: NO_GPU)
    c = cfg(**{"distributed.num_processes": 2})
    run = tmp_path / "-run"  # a folder named like an option stays a value
    run.mkdir()
    path = D.write_accelerate_config(run, c)
    argv = jobs.job_argv(run, c, "py", resume=True)
    assert argv == ["py", "-m", "accelerate.commands.launch", f"--config_file={path}", "--num_cpu_threads_per_process=2",
                    "-m", "studio.train", str(run / "config.yaml"), f"--output-dir={run}", "--resume"]
    text = path.read_text()
    assert text.startswith("# accelerate config written by the studio") and "--num_cpu_threads_per_process=2" in text
    assert yaml.safe_load(text) == D.accelerate_config(c)
    layout = D.layout(cfg(**{"distributed.num_processes": 2, "distributed.num_machines": 2,
                             "training.per_device_train_batch_size": 4, "training.gradient_accumulation_steps": 2}))
    assert (layout.world_size, layout.global_batch, layout.launcher) == (4, 32, True)


def test_detected_gpus_follow_nvidia_smi_and_visible_devices(monkeypatch):
    class Done:
        stdout = "0, NVIDIA H100 80GB HBM3, 81559\n1, NVIDIA H100 80GB HBM3, 81559\n"

    monkeypatch.setattr(D.subprocess, "run", lambda *a, **k: Done())
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    D.detect_gpus.cache_clear()
    try:
        assert D.detect_gpus() == (D.Gpu("1", "NVIDIA H100 80GB HBM3", 81559),)
        monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
        D.detect_gpus.cache_clear()
        assert [g.index for g in D.detect_gpus()] == ["0", "1"]
        assert [v for _, v in D.device_choices()] == ["auto", "cpu", "0", "1", "0,1"]
    finally:
        D.detect_gpus.cache_clear()
