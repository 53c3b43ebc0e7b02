"""The Train tab's Hardware section (``distributed`` in RunConfig) and a run of 2 CPU processes driven through the tab's
own handlers (Start, the progress tick, Stop, Resume) with the studio's queue: what a browser click does, without a
browser. Run: ``pytest tests/ui/test_hardware_section.py``.
"""

from __future__ import annotations

import gradio as gr
import pytest

from studio import config as C
from studio.engine import rundir
from studio.engine.jobs import child, distributed
from studio.ui import i18n
from studio.ui.tabs import train as train_tab
from tests.helpers import wait_until, web_context

LAUNCH_S = 300  # one launch on a busy 2-core machine: imports in three processes, then a few steps


@pytest.fixture
def ctx(tmp_path, monkeypatch):
    monkeypatch.setattr(gr, "Warning", lambda *a, **k: None)  # no request context outside a live app
    c = web_context(tmp_path / "runs")
    yield c
    c.close()


def form(**over) -> list:
    cfg = C.apply_overrides(C.RunConfig(), over)
    return train_tab.config_to_values(cfg, C.field_specs())


def test_hardware_section_is_generated_from_the_config(ctx):
    with gr.Blocks():
        refs = train_tab.build(ctx, gr.State("en"))
    assert "distributed" in refs.sections and refs.sections["distributed"].visible
    assert i18n.t("section.distributed", "en").startswith("Hardware")
    keys = [k for k in refs.fields if k.startswith("distributed.")]
    assert keys == [f"distributed.{n}" for n in ("devices", "num_processes", "backend", "mixed_precision", "num_machines",
                                                 "machine_rank", "main_process_ip", "main_process_port")]
    devices = refs.fields["distributed.devices"]
    assert isinstance(devices, gr.Dropdown) and devices.allow_custom_value
    assert [v for _, v in devices.choices][:2] == ["auto", "cpu"] and "CPU cores" in devices.info
    assert [v for _, v in refs.fields["distributed.backend"].choices] == list(C.DIST_BACKENDS)


def test_launch_problems_are_named_in_the_form_and_nothing_starts(ctx, monkeypatch, tmp_path):
    monkeypatch.setattr(distributed, "deepspeed_installed", lambda: False)
    specs = C.field_specs()
    data = str(tmp_path / "d.jsonl")
    message, _ = train_tab._on_start(ctx, specs, "en", form(**{"data.datasets": [data], "distributed.num_processes": 1000}))
    assert "distributed.num_processes=1000: more processes than devices" in message
    message, _ = train_tab._on_start(ctx, specs, "en", form(**{"data.datasets": [data], "distributed.backend":
                                                               "deepspeed_zero2", "distributed.devices": "cpu"}))
    assert "distributed.backend=deepspeed_zero2: DeepSpeed is not installed" in message
    assert "distributed.backend=deepspeed_zero2: needs GPUs" in message
    message, _ = train_tab._on_start(ctx, specs, "en", form(**{"data.datasets": [data], "method.stage": "ppo",
                                                               "rl.reward_funcs": ["length:9"], "distributed.num_processes": 2}))
    assert "does not apply to method.stage=ppo" in message
    message, _ = train_tab._on_start(ctx, specs, "en", form(**{"data.datasets": [data], "distributed.num_machines": 2,
                                                               "distributed.machine_rank": 1}))
    assert "distributed.main_process_ip: needed with num_machines=2" in message
    assert not ctx.runs_root.exists() or not any(ctx.runs_root.iterdir())
    cmd, note = train_tab._on_show_command(ctx, specs, "en", "", form(**{"data.datasets": [data],
                                                                         "distributed.num_processes": 2}))
    assert "--set distributed.num_processes=2" in cmd and "-m accelerate.commands.launch --config_file=" in note


def _status(ctx, run_id: str) -> dict:
    return rundir.read_status(ctx.runs_root / run_id)


STEPS = 40  # enough that Stop lands before the end on a fast machine (CI finished 12 steps before Stop once)


def test_train_tab_starts_stops_and_resumes_two_processes(ctx, tiny_model_dir, alpaca_file):
    pytest.importorskip("accelerate")
    if distributed.cpu_cores() < 2:
        pytest.skip("2 CPU processes need 2 cores")
    ctx.jobs.start(interval=0.2)
    specs = C.field_specs()
    values = form(**{"model.name_or_path": str(tiny_model_dir), "data.datasets": [str(alpaca_file)],
                     "training.max_steps": STEPS, "training.per_device_train_batch_size": 4, "training.cutoff_len": 96,
                     "distributed.num_processes": 2})
    message, command = train_tab._on_start(ctx, specs, "en", values)
    job = ctx.jobs.active()
    assert job is not None and job.run_id in message
    assert command.split()[1:3] == ["-m", "accelerate.commands.launch"]  # the command the tab shows
    assert (job.run_dir / "accelerate.yaml").is_file() and "num_processes: 2" in (job.run_dir / "accelerate.yaml").read_text()
    wait_until(lambda: _status(ctx, job.run_id).get("step", 0) >= 2, LAUNCH_S, "step 2", interval=0.1)
    progress = train_tab._on_tick(ctx, "en", None)[0]
    assert "2 processes on 1 machine(s), ddp" in progress
    ranks = [p for p in child.descendants(job.pid) if "studio.train" in child.command_line(p)]
    assert len(ranks) == 2 and _status(ctx, job.run_id)["launcher"]["pid"] == job.pid  # rank 0 names the launcher

    assert job.run_id in train_tab._on_stop(ctx, "en")
    wait_until(lambda: ctx.jobs.active() is None, 120, "the stopped group to end", interval=0.1)
    status = _status(ctx, job.run_id)
    assert status["state"] == "aborted" and status["exit_code"] == 0 and status["stop_reason"] == "STOP file"
    assert not any(child.alive(p) for p in ranks + [job.pid])  # every rank stopped, none left behind
    stopped_at = status["step"]
    assert 2 <= stopped_at < STEPS and (job.run_dir / "checkpoints" / f"checkpoint-{stopped_at}").is_dir()
    assert [p.name for p in ctx.runs_root.iterdir()] == [job.run_id]  # one run folder

    message, command = train_tab._on_resume(ctx, "en")
    assert job.run_id in message and command.endswith("--resume")
    wait_until(lambda: ctx.jobs.active() is None and not ctx.jobs.queued(), LAUNCH_S, "the resumed run to end",
               interval=0.2)
    status = _status(ctx, job.run_id)
    assert status["state"] == "finished" and status["step"] == STEPS and status["resumed"] and status["world_size"] == 2
    steps = [m["step"] for m in rundir.read_metrics(job.run_dir) if m.get("kind") == "train"]
    assert steps == list(range(1, STEPS + 1))  # one writer (rank 0), continued where it stopped
    assert (job.run_dir / "adapter" / "adapter_model.safetensors").is_file()
    assert "only an aborted or failed run resumes" in train_tab._on_resume(ctx, "en")[0]
