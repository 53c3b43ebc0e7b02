"""The studio driven without a browser: launched on a free port and called through ``gradio_client`` with the stable API
names (README_UI_API.md). One real 2-step run of a tiny random Llama goes through the whole path (API -> job queue ->
``python -m studio.train`` child -> run folder -> status), then chat compare and merge use its adapter.
Also checks ``python launch.py`` itself: up quickly, loopback, share without internet.

Run: ``pytest tests/test_ui_client.py`` (about a minute on 2 CPU cores; most of it is the child importing torch).
"""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.helpers import TEST_ROOTS, stop_process, wait_until

ROOT = Path(__file__).resolve().parents[2]
RUN_TIMEOUT_S = 600


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def studio(tmp_path_factory, tiny_model_dir):
    """An in-process studio with a tiny preset, on a free port; yields (client, ctx)."""
    from gradio_client import Client

    from studio.ui import app
    from studio.ui.context import AppContext

    tmp = tmp_path_factory.mktemp("ui_client")
    data = tmp / "alpaca.jsonl"
    data.write_text("".join(json.dumps({"instruction": f"Say {i}.", "input": "", "output": f"{i}."}) + "\n" for i in range(16)))
    ctx = AppContext.create(runs_root=tmp / "runs", allow_paths=TEST_ROOTS)
    ctx.presets_root = tmp / "presets"
    ctx.presets_root.mkdir()
    (ctx.presets_root / "tiny.yaml").write_text(
        f"# Tiny test preset.\nmodel:\n  name_or_path: {tiny_model_dir}\ndata:\n  datasets: [{data}]\n"
        "training:\n  max_steps: 2\n  per_device_train_batch_size: 4\n  cutoff_len: 64\noutput:\n  run_name: tiny\n")
    demo = app.build_app(ctx)
    demo.queue()
    _, url, _ = demo.launch(server_port=free_port(), prevent_thread_lock=True, ssr_mode=False, quiet=True)
    try:
        yield Client(url, verbose=False), ctx
    finally:
        demo.close()
        ctx.close()


def _wait_state(client, run_id: str, states=("finished", "failed", "aborted"), timeout=RUN_TIMEOUT_S) -> dict:
    def ended():
        st = client.predict(run_id=run_id, api_name="/run_status")
        return st if st["state"] in states else None

    return wait_until(ended, timeout, f"run {run_id} to reach one of {states}", interval=1)


@pytest.fixture(scope="module")
def finished_run(studio):
    """Start a run and queue a second one (cancelled) through the API; wait for the first to finish."""
    client, ctx = studio
    first = client.predict(preset="tiny", overrides={"training.max_steps": 2}, api_name="/start_run")
    second = client.predict(preset="tiny", overrides={"output.run_name": "second"}, api_name="/start_run")
    assert second["queue_position"] == 1 and second["state"] == "queued"
    cancelled = client.predict(run_id=second["run_id"], api_name="/cancel_run")
    assert cancelled["state"] == "aborted"
    status = _wait_state(client, first["run_id"])
    # the child writes "finished", then exits
    wait_until(lambda: ctx.jobs.active() is None, 60, "the queue to release the finished child", interval=0.2)
    return first, status


def test_list_presets(studio):
    client, _ = studio
    presets = client.predict(api_name="/list_presets")
    assert [p["name"] for p in presets] == ["tiny"]
    assert presets[0]["description"] == "Tiny test preset."


def test_start_run_reaches_finished(studio, finished_run):
    client, ctx = studio
    started, status = finished_run
    assert "-m studio.train" in started["command"] and started["run_dir"].startswith(str(ctx.runs_root))
    assert status["state"] == "finished", status["log_tail"]
    assert status["step"] == 2 and status["exit_code"] == 0 and status["loss"] is not None
    runs = {r["run_id"]: r for r in client.predict(api_name="/list_runs")}
    assert runs[started["run_id"]]["state"] == "finished"
    assert (Path(started["run_dir"]) / "adapter").is_dir()


def test_invalid_override_is_named(studio):
    from gradio_client.exceptions import AppError

    client, _ = studio
    with pytest.raises(AppError, match="lora.r"):
        client.predict(preset="tiny", overrides={"lora.r": 0}, api_name="/start_run")
    with pytest.raises(AppError, match="unknown preset"):
        client.predict(preset="nope", api_name="/start_run")


def test_stop_without_active_run_says_so(studio, finished_run):
    from gradio_client.exceptions import AppError

    client, _ = studio
    with pytest.raises(AppError, match="no run is active"):
        client.predict(api_name="/stop_run")


def test_chat_compare_returns_two_answers(studio, finished_run, tiny_model_dir):
    client, _ = studio
    started, _ = finished_run
    out = client.predict(prompt="Say 3.", adapter=started["run_dir"], model=str(tiny_model_dir), max_new_tokens=8,
                         api_name="/chat_compare")
    assert isinstance(out["base"], str) and isinstance(out["tuned"], str)
    assert out["base"] and out["tuned"]


def test_merge_saves_a_model(studio, finished_run, tmp_path):
    client, _ = studio
    started, _ = finished_run
    result = client.predict(source=started["run_dir"], out_dir=str(tmp_path / "merged"), api_name="/merge")
    assert result["ok"] and (tmp_path / "merged" / "config.json").is_file()


def test_export_endpoint_merges_a_run_and_reports_the_check(studio, finished_run, tmp_path):
    """``/export`` runs ``studio export`` as a child (as the Export tab does): verified merge, its size, the command."""
    from gradio_client.exceptions import AppError

    client, _ = studio
    started, _ = finished_run
    out = tmp_path / "exported"
    result = client.predict(sources=[started["run_dir"]], out_dir=str(out), dtype="bfloat16", api_name="/export")
    assert result["ok"] and result["dtype"] == "bfloat16" and result["out_dir"] == str(out.resolve())
    assert result["size_bytes"] == sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    run = Path(started["run_dir"]).resolve()
    assert result["command"] == f"studio export --adapter={run} --out={out.resolve()} --dtype=bfloat16"
    rows = result["verification"]["per_prompt"]
    assert len(rows) == 4 and all(r["max_abs_diff"] <= result["tolerance"] for r in rows)
    with pytest.raises(AppError, match="not empty"):
        client.predict(sources=[started["run_dir"]], out_dir=str(out), api_name="/export")


def test_evaluate_endpoint_compares_base_and_tuned(studio, tiny_model_dir, tmp_path):
    """``/evaluate`` runs ``studio eval`` as a child (as the Evaluate tab does); its table is what predictions.jsonl scores."""
    import torch
    from gradio_client.exceptions import AppError
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from studio.engine.evaluate.scores import score

    client, ctx = studio
    torch.manual_seed(1)  # a random non-zero adapter: the tiny base model answers nothing, the tuned one does
    peft_model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model_dir),
                                LoraConfig(r=4, lora_alpha=32, target_modules=["q_proj", "v_proj", "o_proj"],
                                           init_lora_weights=False))
    peft_model.save_pretrained(tmp_path / "adapter")
    data = tmp_path / "qa.jsonl"
    data.write_text("".join(json.dumps({"instruction": f"Say the number {i}.", "input": "", "output": f"It is {i}."}) + "\n"
                            for i in range(7)))
    # random weights rarely hit a reference word: a metric on the answer itself makes the comparison below bite
    metric = ctx.access.metrics_dir / "mine.py"  # the one folder custom metrics may come from, with --allow-code
    metric.parent.mkdir(parents=True, exist_ok=True)
    metric.write_text("def answer_chars(prediction, reference):\n    return float(len(prediction))\n")
    out = tmp_path / "eval"
    kwargs = dict(model=str(tiny_model_dir), adapter=str(tmp_path / "adapter"), data=str(data), metrics="em,f1,rougeL",
                  custom_metrics=[f"{metric}:answer_chars"], compare=True, max_new_tokens=6, batch_size=4,
                  out_dir=str(out), api_name="/evaluate")
    with pytest.raises(AppError, match="started without --allow-code"):  # code: refused unless the owner allows it
        client.predict(**kwargs)
    assert not out.exists()
    ctx.access = dataclasses.replace(ctx.access, allow_code=True)  # as `launch.py --allow-code` would start it
    try:
        result = client.predict(**kwargs)
    finally:
        ctx.access = dataclasses.replace(ctx.access, allow_code=False)
    assert result["out_dir"] == str(out) and result["rows"] == 7 and result["models"] == ["base", "tuned"]
    assert result["command"].startswith(f"studio eval --model={tiny_model_dir} --out={out} --adapter=")
    preds = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert len(preds) == 14
    answers = {}
    for side in ("base", "tuned"):
        mine = sorted((p for p in preds if p["model"] == side), key=lambda p: p["row"])
        answers[side] = [p["prediction"] for p in mine]
        summary, _ = score(answers[side], [p["reference"] for p in mine], ["em", "f1", "rougeL"])
        summary["answer_chars"] = sum(len(a) for a in answers[side]) / len(mine)
        for name, value in summary.items():
            assert result["table"][name][side] == pytest.approx(value, abs=1e-6), (name, side)
    assert result["table"]["answer_chars"]["tuned"] > 0
    for row in result["table"].values():
        assert row["delta"] == pytest.approx(row["tuned"] - row["base"], abs=1e-5)
    changed = result["changed_most"]
    assert 1 <= len(changed) <= 5 and changed[0]["metric"] == "answer_chars"
    for r in changed:
        assert r["tuned"] == answers["tuned"][r["row"]] and r["tuned_score"] == len(r["tuned"])


def test_evaluate_endpoint_names_bad_input(studio, tmp_path):
    from gradio_client.exceptions import AppError

    client, _ = studio
    data = tmp_path / "qa.jsonl"
    data.write_text(json.dumps({"instruction": "Hi", "input": "", "output": "Hello"}) + "\n")
    with pytest.raises(AppError, match="unknown metric 'bogus'"):
        client.predict(data=str(data), metrics="f1,bogus", out_dir=str(tmp_path / "e1"), api_name="/evaluate")
    with pytest.raises(AppError, match="missing.jsonl"):
        client.predict(data=str(tmp_path / "missing.jsonl"), out_dir=str(tmp_path / "e2"), api_name="/evaluate")
    with pytest.raises(AppError, match="nothing to evaluate"):
        client.predict(out_dir=str(tmp_path / "e3"), api_name="/evaluate")
    assert not (tmp_path / "e1").exists()  # refused before any child or folder
    with pytest.raises(AppError, match=r"the evaluation failed: .*no-such-model"):  # found by the child: its reason comes back
        client.predict(model=str(tmp_path / "no-such-model"), data=str(data), out_dir=str(tmp_path / "e4"), api_name="/evaluate")


# -- the launcher itself ---------------------------------------------------------------------------------------------------


class Launched:
    """``python launch.py`` in a child process; its output is collected by a thread so nothing blocks on a full pipe."""

    def __init__(self, *flags: str, home: Path):
        self.port = free_port()
        env = dict(os.environ, PYTHONUNBUFFERED="1", STUDIO_HOME=str(home))
        self.started = time.time()
        self.proc = subprocess.Popen([sys.executable, "launch.py", "--port", str(self.port), *flags], cwd=ROOT, env=env,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=lambda: self.lines.extend(self.proc.stdout), daemon=True)
        self._reader.start()

    def output(self) -> str:
        return "".join(self.lines)

    def wait_http(self, timeout: float) -> float:
        """Seconds from the command to the first HTTP 200 on /."""
        def answered() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"launch.py exited: {self.output()}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/", timeout=2) as r:
                    return r.status == 200
            except (urllib.error.URLError, ConnectionError, OSError):
                return False

        wait_until(answered, timeout, "an HTTP 200 from launch.py", interval=0.05)
        return time.time() - self.started

    def wait_output(self, text: str, timeout: float = 60) -> None:
        wait_until(lambda: text in self.output(), timeout, f"{text!r} in launch.py's output")

    def stop(self) -> None:
        stop_process(self.proc, timeout=20)


def test_launch_py_serves_on_loopback(tmp_path):
    """launch.py answers on 127.0.0.1 (how fast is measured by benchmarks/startup_and_data.py, not asserted here)."""
    launched = Launched(home=tmp_path)
    try:
        took = launched.wait_http(timeout=180)
        launched.wait_output("Tuning Studio at")
    finally:
        launched.stop()
    print(f"launch.py: HTTP 200 after {took:.1f} s")
    assert f"http://127.0.0.1:{launched.port}" in launched.output()


def test_share_without_internet_keeps_serving_with_a_password(tmp_path):
    launched = Launched("--share", home=tmp_path)
    try:
        launched.wait_http(timeout=180)
        launched.wait_output("Tuning Studio at")
        launched.wait_output("public", timeout=30)
    finally:
        launched.stop()
    out = launched.output()
    assert "password:" in out
    if "public link:" not in out:  # this machine has no internet: the studio must say so and keep serving
        assert "share link could not be created" in out and "still serving locally" in out


def test_data_tab_pages_and_renders_a_row(studio, tiny_model_dir):
    from studio import config as C
    from studio.ui.tabs import data as data_tab

    _, ctx = studio
    spec = C.load(ctx.presets()["tiny"]).data.datasets[0]
    info, frame, page = data_tab._on_page(ctx.access, spec, 2, 5, "en")
    assert "**alpaca** format" in info and page == 2 and frame["#"].tolist() == [5, 6, 7, 8, 9]
    html, stats = data_tab._on_render(ctx, spec, 3, str(tiny_model_dir), 1024, "en")
    assert "<span class='ts-trained'>3.<|im_end|>".replace("<|", "&lt;|").replace("|>", "|&gt;") in html
    assert "trained on" in stats
