"""The studio UI built without launching: every tab and handler present, the form <-> RunConfig mapping, i18n, the
launch flags' safety rules, and the import-time promise (no torch). No model, no server, a few seconds.

Run: ``pytest tests/test_ui_build.py``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import gradio as gr
import pytest

from tests.helpers import TEST_ROOTS

from studio import config as C
from studio.ui import api, app, i18n
from studio.ui.tabs import train as train_tab
from studio.ui.context import AppContext

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def ctx(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("ui_build")
    c = AppContext.create(runs_root=tmp_path / "runs", start_jobs=False, allow_paths=TEST_ROOTS)
    c.presets_root = tmp_path / "presets"
    c.presets_root.mkdir()
    (c.presets_root / "quick.yaml").write_text("# A quick preset.\n# studio train quick.yaml\ntraining:\n  learning_rate: 0.001\n"
                                               "  max_steps: 7\ndata:\n  datasets: [a.jsonl, b.jsonl]\nmethod:\n"
                                               "  finetuning_type: qlora\n")
    return c


@pytest.fixture(scope="module")
def refs(ctx):
    """Built once for the module (a build takes a second or two); the tests only read it."""
    return app.build(ctx)


def test_importing_the_ui_does_not_import_torch():
    code = ("import sys, studio.ui.app, studio.ui.context, studio.engine.jobs.training, studio.engine.curves; "
            "heavy = [m for m in ('torch', 'transformers', 'peft', 'trl') if m in sys.modules]; "
            "print(heavy); sys.exit(1 if heavy else 0)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr


def test_launch_flags_module_is_light():
    """``studio --help`` lists the webui flags from studio.ui.flags: it must not pull in gradio."""
    code = "import sys, studio.ui.flags; sys.exit(1 if 'gradio' in sys.modules else 0)"
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT, timeout=60).returncode == 0


def _triggers(demo: gr.Blocks) -> set[tuple[int, str]]:
    return {(block_id, event) for fn in demo.fns.values() for block_id, event in fn.targets}


def test_every_tab_and_handler_is_present(refs):
    assert list(refs.tabs) == ["train", "monitor", "eval", "data", "export", "chat"]
    wired = _triggers(refs.demo)
    clicks = [refs.train.start, refs.train.stop, refs.train.show_cmd, refs.train.cancel, refs.monitor.refresh,
              refs.data.load, refs.data.use, refs.data.prev, refs.data.next, refs.data.render, refs.export.merge,
              refs.chat.send, refs.chat.clear]
    missing = [b.value for b in clicks if (b._id, "click") not in wired]
    assert not missing, f"buttons without a handler: {missing}"
    for timer in (refs.train.timer, refs.monitor.timer):
        assert (timer._id, "tick") in wired
    for component, event in ((refs.train.preset, "change"), (refs.lang_radio, "change"), (refs.data.upload, "upload"),
                             (refs.chat.prompt, "submit"), (refs.monitor.pick, "change"), (refs.demo, "load")):
        assert (component._id, event) in wired, (component, event)


def test_api_endpoints_have_stable_names(refs):
    named = refs.demo.get_api_info()["named_endpoints"]
    assert {f"/{name}" for name in api.ENDPOINTS} <= set(named)
    # the browser's own events stay out of the documented API
    assert set(named) == {f"/{name}" for name in api.ENDPOINTS}
    params = [p["parameter_name"] for p in named["/start_run"]["parameters"]]
    assert params == ["preset", "overrides"]


def test_form_is_generated_from_field_specs(refs):
    specs = C.field_specs()
    assert [s.key for s in refs.train.specs] == [s.key for s in specs]
    for spec in specs:
        comp = refs.train.fields[spec.key]
        expected = (gr.Checkbox if spec.type is bool else gr.Dropdown if spec.choices or spec.key in train_tab.DETECTED_CHOICES
                    or spec.key in train_tab.PICKERS else gr.Number if spec.type in (int, float) else gr.Textbox)
        assert isinstance(comp, expected), spec.key
        if spec.choices:
            assert [c[1] for c in comp.choices] == list(spec.choices)
    assert set(refs.train.sections) == set(C.sections())


def test_a_fresh_home_offers_the_shipped_datasets_with_row_counts(refs):
    """A newcomer picks data without typing a path: the Train form's dataset picker and the Data tab's list hold the
    shipped demo sets (each dataset_info.json entry) with their row counts; a typed path is allowed too."""
    from studio.paths import repo_root

    picker = refs.train.fields["data.datasets"]
    assert picker.multiselect and picker.allow_custom_value
    offered = {value: label for label, value in picker.choices}
    demo = repo_root() / "assets" / "data"
    for entry in ("demo_sft", "demo_multiturn", "demo_preference", "demo_kto"):
        assert f"{demo}#{entry}" in offered, sorted(offered)
    rows = sum(1 for line in (demo / "demo_sft.jsonl").read_text(encoding="utf-8").splitlines() if line.strip())
    assert offered[f"{demo}#demo_sft"] == f"demo_sft · sft · {rows} rows"
    assert f"{demo / 'demo_prompts.jsonl'}" in offered  # a file no entry names is offered as a file
    data_choices = {value for _, value in refs.data.choose.choices}
    assert f"{demo}#demo_sft" in data_choices
    assert refs.train.sections["quantization"].visible is False  # shown only for qlora


def test_values_to_config_round_trip_and_named_errors(refs):
    specs = refs.train.specs
    cfg = C.apply_overrides(C.RunConfig(), {"data.datasets": ["a.jsonl", "b.jsonl"], "training.learning_rate": 1e-3,
                                            "lora.use_dora": True, "quantization.bits": 8})
    values = train_tab.config_to_values(cfg, specs)
    back, errors = train_tab.values_to_config(specs, values)
    assert errors == [] and back == cfg
    values = train_tab.config_to_values(C.RunConfig(), specs)  # no dataset
    keys = [s.key for s in specs]
    values[keys.index("training.learning_rate")] = -1
    values[keys.index("lora.r")] = 0
    values[keys.index("training.max_steps")] = None
    _, errors = train_tab.values_to_config(specs, values)
    text = "\n".join(errors)
    for key in ("training.learning_rate", "lora.r", "training.max_steps", "data.datasets"):
        assert key in text, text


def test_preset_fills_the_form_and_shows_the_command(ctx, refs):
    specs = refs.train.specs
    note, *values = train_tab._on_preset(ctx, specs, "quick", "en")
    assert note.startswith("A quick preset.")
    cfg, errors = train_tab.values_to_config(specs, values)
    assert not errors and cfg.training.max_steps == 7 and cfg.data.datasets == ["a.jsonl", "b.jsonl"]
    # sections shown: lora, quantization, freeze, preference, rl
    vis = lambda stage, ftype: [u["visible"] for u in train_tab._section_visibility(stage, ftype)]  # noqa: E731
    assert vis("sft", "qlora") == [True, True, False, False, False]
    assert vis("dpo", "lora") == [True, False, False, True, False]
    assert vis("ppo", "lora") == [True, False, False, False, True]
    assert vis("sft", "freeze") == [False, False, True, False, False]
    assert not refs.train.sections["rl"].visible and not refs.train.sections["preference"].visible
    values[[s.key for s in specs].index("lora.r")] = 16
    cmd, note = train_tab._on_show_command(ctx, specs, "en", "quick", values)
    assert cmd.startswith("studio train ") and cmd.endswith("quick.yaml --set lora.r=16")
    assert "-m studio.train" in note


def test_start_with_invalid_values_names_them_and_starts_nothing(ctx, refs, monkeypatch):
    monkeypatch.setattr(gr, "Warning", lambda *a, **k: None)  # no request context outside a live app
    values = train_tab.config_to_values(C.RunConfig(), refs.train.specs)
    values[[s.key for s in refs.train.specs].index("training.warmup_steps")] = -3
    message, _ = train_tab._on_start(ctx, refs.train.specs, "en", values)
    assert "training.warmup_steps" in message and "data.datasets" in message
    assert not ctx.runs_root.exists() or not any(ctx.runs_root.iterdir())


def test_every_string_has_both_languages_and_the_switch_relabels(ctx, refs):
    assert i18n.missing() == []
    out = app._on_lang(ctx, refs, "zh")
    assert out[refs.lang] == "zh"
    assert out[refs.train.start]["value"] == "开始训练"
    assert out[refs.tabs["monitor"]]["label"] == "监控"
    assert out[refs.train.fields["training.learning_rate"]]["info"].startswith("学习率")
    assert out[refs.train.preset]["choices"][0] == ("（默认值）", "")
    assert app._on_lang(ctx, refs, "en")[refs.train.start]["value"] == "Start"
    # every key used in the UI code exists (a typo would raise KeyError at build time; this checks the messages)
    for key in i18n.STRINGS:
        assert i18n.t(key, "zh") and i18n.t(key, "en")


def _args(*argv):
    return app.parse_args(list(argv))


def test_launch_flags_are_safe_by_default(capsys):
    args = _args()
    assert (args.host, args.port, args.share, args.lang) == ("127.0.0.1", 7860, False, "en")
    assert app.resolve_auth(args) is None
    user, password = app.resolve_auth(_args("--share"))
    assert user == app.SHARE_USER and len(password) >= 12
    assert password in capsys.readouterr().out
    assert app.resolve_auth(_args("--auth", "ann:s3:cret-pw")) == ("ann", "s3:cret-pw")
    with pytest.raises(app.LaunchRefused, match="USER:PASS"):
        app.resolve_auth(_args("--auth", "nopassword"))
    with pytest.raises(app.LaunchRefused, match="--insecure-no-login"):
        app.resolve_auth(_args("--host", "0.0.0.0"))
    app.resolve_auth(_args("--host", "0.0.0.0", "--insecure-no-login"))
    assert "WARNING" in capsys.readouterr().out
    app.resolve_auth(_args("--host", "::1"))
    assert "WARNING" not in capsys.readouterr().out
    assert _args("--lang", "zh").lang == "zh"


def test_auth_from_environment(monkeypatch):
    monkeypatch.setenv(app.AUTH_ENV, "bob:pw-from-env")
    assert app.resolve_auth(_args("--share")) == ("bob", "pw-from-env")


def test_launch_py_is_the_webui_command():
    text = (ROOT / "launch.py").read_text()
    assert "from studio.ui.app import serve" in text and "parse_args(sys.argv[1:])" in text
    assert isinstance(app.parse_args([]), argparse.Namespace)


def test_monitor_shows_rewards_failures_and_config_diff(tmp_path):
    import json

    from studio.engine import rundir
    from studio.ui.tabs import monitor as monitor_tab

    ctx = AppContext.create(runs_root=tmp_path / "runs", start_jobs=False, allow_paths=TEST_ROOTS)
    dpo, bad = ctx.runs_root / "20250101-000000-dpo", ctx.runs_root / "20250101-000001-bad"
    for run, lr in ((dpo, 1e-4), (bad, 2e-4)):
        run.mkdir(parents=True)
        C.save(C.apply_overrides(C.RunConfig(), {"training.learning_rate": lr}), run / rundir.CONFIG)
    rundir.write_status(dpo, state="finished", step=2, max_steps=2, started_at=1.0, final_loss=0.5)
    rundir.write_status(bad, state="failed", exit_code=1, error="RuntimeError: boom", started_at=2.0)
    (bad / rundir.LOG).write_text("loading the model\nTraceback (most recent call last):\nRuntimeError: boom\n")
    (dpo / rundir.METRICS).write_text("".join(json.dumps({"step": s, "loss": 0.7, "rewards/chosen": 0.1 * s,
                                                          "rewards/rejected": -0.1 * s, "kl": 0.01}) + "\n" for s in (1, 2)))
    out = monitor_tab._on_tick(ctx, [dpo.name, bad.name], 0.6, "en", None)
    pick, table, status, reward_box, diff_note, diff, *plots, csv_pick, sig = out
    assert pick["value"] == [dpo.name, bad.name] and len(table) == 2
    assert reward_box["visible"] is True
    base = dict(zip(monitor_tab.metrics.BASE_CHARTS, plots))
    extra = {p["label"]: p for p in plots[len(base):] if p.get("visible")}
    assert len(plots) == len(base) + monitor_tab.EXTRA_SLOTS
    assert list(extra) == ["Rewards (chosen / rejected)", "KL divergence"]
    assert len(extra["Rewards (chosen / rejected)"]["value"]) == 4
    assert base["memory"]["visible"] is False and base["loss"]["visible"] is True
    assert "rewards" in csv_pick["choices"] and all(p.get("x") == "step" for p in plots if p.get("visible"))
    # the view controls: x axis by epoch, log scale; the CSV button gives one chart's points
    by_epoch = monitor_tab._on_tick(ctx, [dpo.name], 0.6, "en", None, "epoch", True, 0, False)
    loss_plot = by_epoch[6]
    assert loss_plot["x"] == "epoch" and loss_plot["y_title"] == "log10(loss)" and loss_plot["x_title"] == "epoch"
    csv = monitor_tab._on_csv(ctx, [dpo.name], "rewards", 0.6)
    assert Path(csv).read_text().splitlines()[0] == ",".join(monitor_tab.metrics.COLUMNS)
    assert "exit code 1" in status and "RuntimeError: boom" in status
    assert diff.iloc[:, 0].tolist() == ["training.learning_rate"] and diff_note == ""
    # nothing changed on disk: the next tick sends nothing
    assert monitor_tab._on_tick(ctx, [dpo.name, bad.name], 0.6, "en", sig) == [gr.skip()] * len(out)
    # nothing picked: the newest run is shown
    assert monitor_tab._on_tick(ctx, [], 0.6, "zh", None)[0]["value"] == [bad.name]


def test_monitor_charts_any_logged_metric_in_generic_slots(tmp_path):
    """Preference and RL keys (and keys no one listed) get charts without UI changes; eval twins share a chart."""
    import json

    from studio.engine import rundir
    from studio.ui.tabs import monitor as monitor_tab

    ctx = AppContext.create(runs_root=tmp_path / "runs", start_jobs=False, allow_paths=TEST_ROOTS)
    run = ctx.runs_root / "20250101-000000-rl"
    run.mkdir(parents=True)
    rundir.write_status(run, state="running", step=2, max_steps=4, started_at=1.0)
    keys = {"reward": 0.5, "kl": 0.1, "entropy": 2.0, "value_loss": 0.3, "response_length": 20.0, "rewards/margins": 0.2,
            "accuracy": 0.7, "eval_accuracy": 0.6, "my_new_metric": 1.0, "num_tokens": 500}
    (run / rundir.METRICS).write_text("".join(json.dumps({"step": s, "loss": 0.7, **keys}) + "\n" for s in (1, 2)))
    pick, table, status, box, note, diff, *plots, csv_pick, sig = monitor_tab._on_tick(ctx, [run.name], 0.6, "zh", None)
    shown = [p for p in plots[len(monitor_tab.metrics.BASE_CHARTS):] if p.get("visible")]
    assert box["visible"] is True
    assert [p["y_title"] for p in shown] == ["margins", "accuracies", "reward", "kl", "entropy", "value_loss",
                                            "response_length", "my_new_metric"]  # num_tokens is a counter, not a curve
    acc = next(p for p in shown if p["y_title"] == "accuracies")
    assert set(acc["value"]["series"]) == {"accuracy", "eval_accuracy"} and acc["label"] == "奖励准确率"


def test_chat_streams_base_then_tuned_side_by_side(ctx, monkeypatch):
    from studio.ui.tabs import chat as chat_tab

    seen = []

    class FakeChatModel:  # the real one loads torch; the tab only needs .stream
        def stream(self, messages, use_adapter, **kw):
            seen.append((use_adapter, messages))
            for i in (1, 2):
                yield f"{'tuned' if use_adapter else 'base'} {i}"

    monkeypatch.setattr(ctx, "chat_model", lambda model, adapter: FakeChatModel())
    outs = list(chat_tab._on_send(ctx, "default", "/runs/x", "Be brief.", 0.0, 1.0, 16, "hi", [], [], "en"))
    assert outs[0][2] == ""  # the prompt box is cleared at once
    base, tuned, _ = outs[-1]
    assert [m["content"] for m in base] == ["hi", "base 2"] and [m["content"] for m in tuned] == ["hi", "tuned 2"]
    assert [u for u, _ in seen] == [False, True]
    assert seen[0][1] == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}]
    # a second turn carries the history (gradio hands it back as typed content parts)
    history = [{"role": "user", "content": [{"type": "text", "text": "hi"}]}, {"role": "assistant", "content": "base 2"}]
    list(chat_tab._on_send(ctx, "default", "", "", 0.0, 1.0, 16, "again", history, [], "zh"))
    assert [m["content"] for m in seen[-1][1]] == ["hi", "base 2", "again"]
    last = list(chat_tab._on_send(ctx, "default", "", "", 0.0, 1.0, 16, "x", [], [], "zh"))[-1]
    assert last[1][-1]["content"] == i18n.t("chat.no_tuned", "zh")


def test_export_tab_offers_every_export_and_opens_it_in_chat(ctx, refs, monkeypatch):
    import json

    from studio.paths import exports_dir
    from studio.ui.tabs import chat as chat_tab, export as export_tab

    ex = refs.export
    assert [c[1] for c in ex.gguf.choices] == ["f16", "q8_0", "bf16", "f32"]
    assert {"cat", "linear", "ties", "dare_linear", "dare_ties"} <= {c[1] for c in ex.combine.choices}
    assert [c[1] for c in ex.output.choices] == ["model", "adapter"] and ex.open_chat.visible is False
    wired = _triggers(refs.demo)
    assert (ex.merge._id, "click") in wired and (ex.open_chat._id, "click") in wired
    # the command shown is the CLI's, option for option (absolute paths, every value as --opt=value)
    a, b, out = (str((ctx.runs_root / n).resolve()) for n in ("a", "b", "out"))
    form = (f"{a}\n{b}", "0.7, 0.3", "dare_ties", 0.3, "adapter", out, "float16", ["q8_0"], True)
    assert export_tab.preview_command(ctx, *form) == (
        f"studio export --adapter={a} --adapter={b} --out={out} --weights=0.7,0.3 --combine=dare_ties --density=0.3 "
        "--as=adapter --dtype=float16 --gguf=q8_0 --overwrite")
    req, problem = export_tab.build_request(ctx, f"{a}\n{b}", "1", "cat", 0.5, "model", out, "float32", [], False)
    assert req is None and "2 folder(s) but 1 weight(s)" in problem
    taken = ctx.runs_root.parent / "taken"
    taken.mkdir(exist_ok=True)
    (taken / "keep.txt").write_text("mine")
    occupied_form = (a, "", "cat", 0.5, "model", str(taken), "float32", [], False)
    assert "not made by an export" in export_tab.build_request(ctx, *occupied_form)[1]
    assert "not made by an export" in export_tab.build_request(ctx, *occupied_form[:-1], True)[1]  # whatever overwrite says
    assert export_tab.preview_command(ctx, *occupied_form).endswith(f"--out={taken.resolve()}")  # still shows the command
    req, problem = export_tab.build_request(ctx, str(ctx.runs_root / "r1" / "adapter"), "", "cat", 0.5, "model", "",
                                            "float32", [], False)
    assert problem == "" and req.out_dir == str(exports_dir().resolve() / "adapter") and req.weights is None
    # a folder outside what the page may use is refused by name, whatever the form says
    req, problem = export_tab.build_request(ctx, a, "", "cat", 0.5, "model", str(Path.home() / ".ssh"), "float32", [],
                                            True)
    assert req is None and "outside the folders" in problem
    # an export under $STUDIO_HOME/exports is offered on the Chat tab (its folder and its GGUF file); "Open in Chat"
    # picks it with the base model it came from and says it is a second model in memory
    folder = exports_dir() / "nova"
    (folder / "gguf").mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text("{}")
    (folder / "gguf" / "model-q8_0.gguf").write_bytes(b"GGUF")
    base_dir = ctx.runs_root.parent / "models" / "base"  # a base model folder the page may use
    (folder / "export.json").write_text(json.dumps({"base": str(base_dir), "output": "model", "ok": True}))
    offered = dict((v, k) for k, v in chat_tab.tuned_outputs(ctx))
    assert str(folder) in offered and str(folder / "gguf" / "model-q8_0.gguf") in offered
    picker, adapter, base, note = chat_tab.open_target(ctx, str(folder), "en")
    assert picker["value"] == str(folder) and adapter == str(folder) and base == str(base_dir)
    assert "second model" in note and "full model" in note
    gguf_note = chat_tab.tuned_note(ctx, str(folder / "gguf" / "model-q8_0.gguf"), "zh")
    assert "GGUF" in gguf_note and "第二个模型" in gguf_note
    elsewhere = ctx.runs_root.parent / "elsewhere"
    elsewhere.mkdir(exist_ok=True)
    (elsewhere / "config.json").write_text("{}")
    picker, *_ = chat_tab.open_target(ctx, str(elsewhere), "en")
    assert (elsewhere.name, str(elsewhere)) in picker["choices"]  # a folder outside exports/ (but allowed) is added
    (folder / "export.json").write_text(json.dumps({"base": "/models/base", "output": "model", "ok": True}))
    _, _, base, _ = chat_tab.open_target(ctx, str(folder), "en")  # a base outside the allowed folders is not taken
    assert base == gr.skip()
