"""The Chat tab's arena and server panels (issue 17, items 1 and 2), end to end: through their handlers (as the browser
calls them) and through the documented API with ``gradio_client``: blind rounds -> votes -> a versioned preference
dataset -> win rates -> a DPO run that trains on it; and a server started from the tab that the ``openai`` client uses.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from tests.helpers import TEST_ROOTS, wait_until, web_context

RUN_TIMEOUT_S = 600


def noisy_tiny(tiny_model_dir: Path, out: Path, seed: int) -> Path:
    """The tiny Llama with large random weights: its greedy answers are words (the plain one repeats a newline)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.3)
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def models(tiny_model_dir, tmp_path_factory) -> tuple[Path, Path]:
    tmp = tmp_path_factory.mktemp("arena_models")
    return noisy_tiny(tiny_model_dir, tmp / "base-model", 5), noisy_tiny(tiny_model_dir, tmp / "tuned-model", 6)


@pytest.fixture
def ctx(tmp_path):
    c = web_context(tmp_path / "runs")
    yield c
    c.close()


def test_arena_handlers_ask_vote_show_win_rates_and_queue_dpo(ctx, models):
    from studio.engine import arena as A
    from studio.ui.panels import arena as panel

    base, tuned = models
    steps = list(panel.on_ask(ctx, ["base", str(tuned)], True, str(base), "", 0.0, 1.0, 8, "Hello?", "en"))
    first, last = steps[0], steps[-1]
    assert first[0] == {} and "named after your vote" in first[5]  # blind: no model named while answering
    answers = [a for a in steps[-2][1:5] if a]
    assert len(answers) == 2 and answers[0] != answers[1]
    rnd = last[0]
    state, reveal, table, better = panel.on_vote(ctx, rnd, "B", "", "ui votes", "en")
    assert state == {} and better == "" and "tuned-model" in reveal and "base" in reveal and "1 pair(s)" in reveal
    assert list(table.columns) == panel.TABLE_COLUMNS and table.iloc[0]["votes"] == 1
    from studio.ui.tabs import data as data_tab

    listed = [c[1] if isinstance(c, tuple) else c for c in data_tab._choices(ctx)]  # (label, path) pairs
    assert str(A.dataset_folder("ui votes")) in listed  # the Data tab lists (and opens) the votes
    assert "already voted" in panel.on_vote(ctx, rnd, "A", "", "ui votes", "en")[1]  # a round takes one vote
    assert "Ask a prompt first" in panel.on_vote(ctx, state, "A", "", "ui votes", "en")[1]
    note = panel.on_train(ctx, "ui votes", str(base), "en")
    run_dir = ctx.jobs.last_run()
    ctx.jobs.stop(run_dir.name)  # the API test below trains one to the end; here the submitted config is enough
    assert run_dir.name in note and "DPO" in note
    from studio import config as C

    cfg = C.load(run_dir / "config.yaml")
    assert cfg.method.stage == "dpo" and cfg.data.datasets == [str(A.dataset_folder("ui votes"))]
    # the page may not name a model outside its folders
    refused = list(panel.on_ask(ctx, ["base", "/etc"], True, str(base), "", 0.0, 1.0, 8, "Hi", "en"))
    assert "outside the folders" in refused[-1][5]
    assert panel.on_models(["base", "a", "b"])[2]["visible"] and not panel.on_models(["base"])[2]["visible"]


def test_serve_panel_starts_a_loopback_server_with_a_key_and_stops_it(ctx, models):
    from openai import OpenAI

    from studio.engine.jobs import serving
    from studio.ui.panels import serve as panel

    base, tuned = models
    refused = panel.on_start(ctx, str(base), "/etc", "en")
    assert "outside the folders" in refused[1] and serving.current() is None
    folder, text, _ = panel.on_start(ctx, str(base), str(tuned), "en")
    try:
        assert "stop it first" in panel.on_start(ctx, str(base), "", "en")[1]  # one server from the page at a time
        info = wait_until(lambda: (s := serving.status(Path(folder), access=ctx.access))["state"] in ("serving", "failed") and s, 300,
                          "the server to listen")
        assert info["state"] == "serving", info["log_tail"]
        assert info["url"].startswith("http://127.0.0.1:") and info["models"] == ["tuned-model"]
        job = json.loads((Path(folder) / "job.json").read_text())
        assert info["key"] not in " ".join(job["argv"])  # the key travels in the environment, not on the command line
        assert "--host=127.0.0.1" in job["argv"]
        _, shown, snippet = panel.on_tick(ctx, "", "en")  # a reloaded page finds the running server
        assert info["key"] in shown and info["url"] in snippet and 'model="tuned-model"' in snippet
        reply = OpenAI(base_url=info["url"], api_key=info["key"], max_retries=0).chat.completions.create(
            model="tuned-model", messages=[{"role": "user", "content": "hi"}], max_tokens=4)
        assert reply.choices[0].message.content
    finally:
        stopped = panel.on_stop(ctx, folder, "en")
    assert "stopped" in stopped[1]
    wait_until(lambda: serving.status(Path(folder), access=ctx.access)["state"] == "stopped", 30, "the server to stop")


# -- the documented API ---------------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def studio(tmp_path_factory):
    from gradio_client import Client

    from studio.ui import app
    from studio.ui.context import AppContext

    ctx = AppContext.create(runs_root=tmp_path_factory.mktemp("arena_api") / "runs", allow_paths=TEST_ROOTS)
    demo = app.build_app(ctx)
    demo.queue()
    _, url, _ = demo.launch(server_port=free_port(), prevent_thread_lock=True, ssr_mode=False, quiet=True)
    try:
        yield Client(url, verbose=False), ctx
    finally:
        demo.close()
        ctx.close()


def test_api_votes_make_a_dataset_and_a_dpo_run_trains_on_it(studio, models, tiny_model_dir):
    from gradio_client.exceptions import AppError

    client, ctx = studio
    base, tuned = models
    for i in range(3):
        rnd = client.predict(prompt=f"Question {i}?", models=["base", str(tuned)], model=str(base), max_new_tokens=6,
                             api_name="/arena_round")
        assert rnd["models"] is None and set(rnd["answers"]) == {"A", "B"}
        vote = client.predict(round_id=rnd["round_id"], vote="A" if i < 2 else "bad", better=f"Answer {i}.",
                              dataset="api-votes", api_name="/arena_vote")
        assert set(vote["reveal"].values()) == {f"base ({base.parent.name}/{base.name})", f"{tuned.parent.name}/tuned-model"}
        assert vote["pairs"] == 2 and vote["version"] == i + 1 and vote["rows"] == 2 * (i + 1)
    stats = client.predict(dataset="api-votes", api_name="/arena_stats")
    assert stats["votes"] == 3 and stats["table"][0]["votes"] == 3 and stats["table"][0]["both_bad"] == 1
    with pytest.raises(AppError, match="unknown or already voted"):
        client.predict(round_id=rnd["round_id"], vote="A", api_name="/arena_vote")
    with pytest.raises(AppError, match="outside the folders"):
        client.predict(prompt="x", models=["base", "/etc"], api_name="/arena_round")
    run = client.predict(dataset="api-votes", model=str(tiny_model_dir), overrides={
        "training.max_steps": 2, "training.per_device_train_batch_size": 2, "training.cutoff_len": 64, "lora.r": 2},
        api_name="/arena_train_dpo")
    assert "studio.train" in run["command"]
    done = wait_until(lambda: (st := client.predict(run_id=run["run_id"], api_name="/run_status"))["state"] in (
        "finished", "failed") and st, RUN_TIMEOUT_S, "the DPO run to end", interval=1)
    assert done["state"] == "finished", done["log_tail"]
    report = json.loads((Path(run["run_dir"]) / "data_report.json").read_text())
    assert report["datasets"][0]["dataset"] == stats["dataset"] and report["train_rows"] == 6
