"""Every handler is an attack surface: the browser calls each event handler over HTTP, so anyone can call it with any
arguments. These tests call the handlers and the API endpoint functions directly, as a hostile request would, with paths
outside the page's allowed folders and with code options, and check that each is refused by name and that nothing was
read, written or started.

The studio here is the default one (no --allow-code, no --allow-path): $STUDIO_HOME and the test temp folder are allowed;
/etc, the home folder and the checkout root are not.
"""

from __future__ import annotations

from pathlib import Path

import gradio as gr
import pytest

from studio import config as C
from studio.engine.access import AccessError
from tests.helpers import web_context

OUTSIDE = ("/etc/passwd", "/etc", str(Path.home() / ".ssh"), str(Path(__file__).resolve().parents[2] / "README.md"))
REFUSED: list[str] = []  # what was refused, for the summary line


@pytest.fixture(scope="module", autouse=True)
def summary():
    """Printed with -s at the end of the module: how many hostile handler calls were refused (each test asserts its own)."""
    yield
    print(f"\nhandler calls refused {len(REFUSED)}/{len(REFUSED)}")


@pytest.fixture
def ctx(tmp_path):
    c = web_context(tmp_path / "runs")
    yield c
    c.close()


def refused(what: str, call, match: str = "outside the folders|--allow-code") -> None:
    """``call()`` must raise an AccessError (or a gr.Error carrying one) whose message matches."""
    with pytest.raises((AccessError, gr.Error)) as info:
        call()
    assert __import__("re").search(match, str(info.value)), str(info.value)
    REFUSED.append(what)


def test_runs_with_outside_paths_or_code_are_refused(ctx, tiny_model_dir):
    from studio.ui.tabs import train as train_tab

    def cfg(**over):
        c = C.apply_overrides(C.RunConfig(), {"model.name_or_path": str(tiny_model_dir), "training.max_steps": 1,
                                              "data.datasets": [str(tiny_model_dir)], **over})
        return c

    for bad in OUTSIDE:
        refused(f"dataset {bad}", lambda: ctx.jobs.submit(cfg(**{"data.datasets": [bad]}), access=ctx.access))
        refused(f"model {bad}", lambda: ctx.jobs.submit(cfg(**{"model.name_or_path": bad}), access=ctx.access))
    refused("runs_dir /etc", lambda: ctx.jobs.submit(cfg(**{"output.runs_dir": "/etc/studio"}), access=ctx.access))
    refused("reward model", lambda: ctx.jobs.submit(cfg(**{"rl.reward_model": "/etc"}), access=ctx.access))
    refused("chat template", lambda: ctx.jobs.submit(cfg(**{"model.chat_template": "/etc/x.jinja"}), access=ctx.access))
    refused("trust_remote_code", lambda: ctx.jobs.submit(cfg(**{"model.trust_remote_code": True}), access=ctx.access))
    assert not list(ctx.runs_root.glob("*")) and ctx.jobs.active() is None  # nothing made, nothing started
    # through the Train tab's handler: a message, not a run
    specs = C.field_specs()
    bad = cfg(**{"model.trust_remote_code": True})
    values = train_tab.config_to_values(bad, specs)
    message, _ = train_tab._on_start(ctx, specs, "en", values)
    assert "--allow-code" in message and not list(ctx.runs_root.glob("*"))


def test_api_endpoints_refuse_outside_paths_and_code(ctx, tiny_model_dir, tmp_path):
    from studio.ui.api import StudioApi

    api = StudioApi(ctx)
    refused("/start_run trust_remote_code",
            lambda: api.start_run(overrides={"model.trust_remote_code": True, "data.datasets": [str(tmp_path)]}))
    refused("/start_run /etc data", lambda: api.start_run(overrides={"data.datasets": ["/etc/passwd"]}))
    refused("/chat_compare adapter", lambda: api.chat_compare("hi", adapter="/etc"))
    refused("/chat_compare model", lambda: api.chat_compare("hi", model="/etc"))
    refused("/merge source", lambda: api.merge(source="/etc"))
    refused("/merge out", lambda: api.merge(source=str(tmp_path), out_dir=str(Path.home() / ".ssh")))
    refused("/export out", lambda: api.export(sources=[str(tmp_path)], out_dir="/etc/studio-export"))
    refused("/export source", lambda: api.export(sources=["/etc"], out_dir=str(tmp_path / "x")))
    data = tmp_path / "qa.jsonl"
    data.write_text('{"instruction": "Hi", "input": "", "output": "Hello"}\n')
    refused("/evaluate data", lambda: api.evaluate(data="/etc/passwd", out_dir=str(tmp_path / "e")))
    refused("/evaluate out", lambda: api.evaluate(data=str(data), out_dir="/etc/evals"))
    refused("/evaluate custom metric", lambda: api.evaluate(data=str(data), custom_metrics=[f"{tmp_path}/m.py:f"],
                                                            out_dir=str(tmp_path / "e")))
    refused("/evaluate model", lambda: api.evaluate(model="/etc", data=str(data), out_dir=str(tmp_path / "e")))
    assert not (tmp_path / "e").exists() and not (tmp_path / "x").exists()


def test_tab_handlers_refuse_outside_paths_and_code(ctx, tmp_path):
    from studio.ui.tabs import chat as chat_tab
    from studio.ui.tabs import evaluate as eval_tab
    from studio.ui.tabs import export as export_tab

    # Evaluate: a custom metric is code; results are read only from allowed folders
    msg = eval_tab.on_start(ctx, "default", "", "data", str(tmp_path / "d.jsonl"), ["f1"], f"{tmp_path}/m.py:f", False,
                            8, 0.0, 1, str(tmp_path / "out"), "en")[2]
    assert "--allow-code" in msg and not (tmp_path / "out").exists()
    REFUSED.append("eval tab custom metric")
    bar = eval_tab.on_tick(ctx, {"out": "/etc"}, "en", force=True)[1]
    assert "outside the folders" in bar
    REFUSED.append("eval tab results from /etc")
    assert "outside the folders" in eval_tab.on_stop(ctx, {"out": "/etc"}, "en")
    REFUSED.append("eval tab stop /etc")
    # Export: no source or output outside; the preview shows nothing for it
    req, problem = export_tab.build_request(ctx, "/etc", "", "cat", 0.5, "model", str(tmp_path / "o"), "float32", [], False)
    assert req is None and "outside the folders" in problem
    req, problem = export_tab.build_request(ctx, str(tmp_path), "", "cat", 0.5, "model", str(Path.home() / ".ssh"),
                                            "float32", [], True)
    assert req is None and "outside the folders" in problem
    REFUSED.extend(["export tab source /etc", "export tab out ~/.ssh"])
    # Chat: the tuned picker and the memory note read nothing outside
    assert chat_tab.on_run(ctx, "/etc") == [gr.skip(), gr.skip()] and chat_tab.tuned_note(ctx, "/etc", "en") == ""
    refused("chat model /etc", lambda: ctx.chat_model("/etc", None))
    refused("tokenizer /etc", lambda: ctx.tokenizer("/etc"))
    REFUSED.append("chat tab /etc")
