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
from tests.helpers import TEST_ROOTS, web_context

CHECKOUT_FILE = Path(__file__).resolve().parents[2] / "README.md"
# the checkout's own files too, unless the checkout lies inside the temp folder a test studio may use (a clone in /tmp)
OUTSIDE = ("/etc/passwd", "/etc", str(Path.home() / ".ssh")) + (
    () if any(CHECKOUT_FILE.is_relative_to(root) for root in TEST_ROOTS) else (str(CHECKOUT_FILE),))
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
    refused("run across machines", lambda: ctx.jobs.submit(cfg(**{"distributed.num_machines": 2, "distributed.main_process_ip":
                                                                  "10.0.0.1"}), access=ctx.access))
    assert not list(ctx.runs_root.glob("*")) and ctx.jobs.active() is None  # nothing made, nothing started
    # a run folder someone made from the CLI, naming /etc: the page may not resume it
    from studio.engine import rundir

    run = ctx.runs_root / "cli-run"
    (run / rundir.CHECKPOINTS / "checkpoint-1").mkdir(parents=True)
    C.save(cfg(**{"data.datasets": ["/etc/passwd"]}), run / rundir.CONFIG)
    rundir.write_status(run, state="aborted")
    refused("resume a run naming /etc", lambda: ctx.jobs.resume("cli-run", access=ctx.access))
    assert rundir.read_status(run)["state"] == "aborted" and ctx.jobs.active() is None and not ctx.jobs.queued()
    __import__("shutil").rmtree(run)
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


def test_arena_and_server_refuse_outside_paths(ctx, tmp_path):
    """The arena's models, its DPO run and the Chat tab's server are paths the page names: the same policy applies."""
    from studio.engine import arena as A
    from studio.engine.jobs import serving
    from studio.ui.api import StudioApi
    from studio.ui.panels import serve as serve_panel

    api = StudioApi(ctx)
    refused("/arena_round model", lambda: api.arena_round("hi", models=["base", "/etc"]))
    refused("/arena_round base model", lambda: api.arena_round("hi", models=["base", str(tmp_path)], model="/etc"))
    rnd = A.Round("r1", "q", "", [A.Contender("a", "a", "default", ""), A.Contender("b", "b", "default", "b")],
                  answers=["x", "y"])
    A.record_vote(rnd, "A", dataset="sec")
    refused("/arena_train_dpo model", lambda: api.arena_train_dpo(dataset="sec", model="/etc"))
    assert A.dataset_folder("../../../etc").parent == A.dataset_folder("sec").parent  # a name, never a path
    REFUSED.append("arena dataset name traversal")
    refused("serve adapter", lambda: serving.start("default", "/etc", access=ctx.access))
    refused("serve model", lambda: serving.start("/etc", "", access=ctx.access))
    assert "outside the folders" in serve_panel.on_start(ctx, "default", str(Path.home() / ".ssh"), "en")[1]
    REFUSED.append("serve panel ~/.ssh")
    assert serving.current() is None and not list(ctx.runs_root.glob("*"))  # nothing started


def test_data_tab_handlers_read_and_write_nothing_outside(ctx, tmp_path):
    import json

    from studio.engine.data.workspace import list_workspaces, workspaces_root
    from studio.ui.panels import data_mix, data_versions as dv, row_form
    from studio.ui.tabs import data as data_tab

    secret = Path("/etc/passwd")
    outside = Path.home() / "studio-test-outside.jsonl"  # a file the page may not read, written by the test itself
    outside.write_text(json.dumps({"instruction": "secret?", "input": "", "output": "the secret"}) + "\n")
    try:
        before = list_workspaces()
        for spec in (str(secret), str(outside), f"{outside}#entry", "../" * 8 + "etc/passwd"):
            info = data_tab._on_open(ctx.access, spec, 10, "", "en")[0]
            assert "outside the folders" in info and "the secret" not in json.dumps(info)
            assert "outside the folders" in data_tab._on_apply_mapping(ctx.access, spec, ["instruction"], "prompt", 10, "en")[1]
            edit = data_tab._on_edit(ctx, "copy", spec, 0, "", "default", 1024, 1, 10, "en")
            assert "outside the folders" in edit[1]
            assert row_form.fill(ctx.access, spec, 0, "en")[1] == {}  # nothing loaded into the form
            assert "outside the folders" in data_mix.on_preview(ctx.access, {"data": [[spec, 0, 0.0]]}, 0, 0, "en")[0]
            assert "outside the folders" in dv.on_prune_preview(ctx.access, spec, 1, "en")[0] or \
                "Only an editable copy" in dv.on_prune_preview(ctx.access, spec, 1, "en")[0]
            REFUSED.append(f"data tab {spec}")
        assert list_workspaces() == before  # no copy was made of anything outside
        # a mix name is a folder name, never a path: "../../x" lands inside the datasets folder
        good = tmp_path / "in.jsonl"
        good.write_text(json.dumps({"instruction": "q", "input": "", "output": "a"}) + "\n")
        msg, _ = data_mix.on_save(ctx.access, {"data": [[str(good), 0, 0.0]]}, 0, 0, "en", "../../../../tmp/escaped")
        made = [p for p in list_workspaces() if p not in before]
        assert len(made) == 1 and made[0].parent == workspaces_root() and not Path("/tmp/escaped.jsonl").exists()
        REFUSED.append("mix name traversal")
    finally:
        outside.unlink(missing_ok=True)


def _engine_names(tree) -> set[str]:
    """The names a UI module binds to the engine: imported engine modules, functions and classes (aliases too)."""
    import ast

    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("studio.engine"):
            names |= {a.asname or a.name for a in node.names}
    return names


def test_every_ui_call_to_a_guarded_engine_function_passes_the_access_policy():
    """A handler that forgot ``access=`` would run with the CLI's full freedom: computed from the UI's real code (every
    engine function with an ``access`` parameter, every call of it from studio/ui, through whatever name it was imported)."""
    import ast

    root = Path(__file__).resolve().parents[2] / "studio"
    guarded = {n.name for p in (root / "engine").rglob("*.py") for n in ast.walk(ast.parse(p.read_text()))
               if isinstance(n, ast.FunctionDef) and any(a.arg == "access" for a in n.args.args + n.args.kwonlyargs)}
    assert {"open_dataset", "submit", "resume", "eval_argv", "open_chat", "build_request", "plan_mix", "contender",
            "start"} <= guarded
    missing, seen = [], 0
    for path in (root / "ui").rglob("*.py"):
        tree = ast.parse(path.read_text())
        engine = _engine_names(tree)
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            f = node.func
            direct = isinstance(f, ast.Name) and f.id in engine and f.id in guarded
            via = isinstance(f, ast.Attribute) and f.attr in guarded and (
                isinstance(f.value, ast.Name) and f.value.id in engine
                or isinstance(f.value, ast.Attribute) and f.value.attr == "jobs" and f.attr in ("submit", "resume"))
            if direct or via:
                seen += 1
                if not any(k.arg == "access" for k in node.keywords):
                    missing.append(f"{path.relative_to(root)}:{node.lineno} {ast.unparse(f)}")
    assert seen >= 20 and missing == []
