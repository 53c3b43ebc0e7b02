"""The self-cognition card on the Train tab: preview, save, Start (the preset with the four fields, through the job queue),
the before/after table from probe.json, and "Chat with it" opening the Chat tab on the run's adapter. No training here:
the slow self-cognition test trains; this one checks what the card does with the engine's plain data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers import TEST_ROOTS

from studio import config as C
from studio.engine.selfcog import probe
from studio.engine import rundir
from studio.engine.jobs.training import JobManager
from studio.ui import app
from studio.paths import presets_dir
from studio.ui.panels import identity_card as card
from studio.ui.context import AppContext

NAMES = ("小新", "Nova", "新星实验室", "Nova Labs")  # name_zh, name_en, author_zh, author_en


@pytest.fixture
def ctx(tmp_path):
    c = AppContext.create(runs_root=tmp_path / "runs", start_jobs=False, allow_paths=TEST_ROOTS)
    c.uploads_root = tmp_path / "uploads"
    c.jobs = JobManager(tmp_path / "runs", python="/bin/true")  # the child "trains" instantly: no torch in this test
    yield c
    c.close()


def test_the_card_is_on_the_train_tab_and_chat_with_it_targets_the_chat_tab(ctx):
    refs = app.build(ctx)
    ident = refs.train.identity
    assert [c.value for c in ident.names()] == list(NAMES)
    assert ident.open_chat.visible is False  # nothing to chat with before a run
    deps = refs.demo.config["dependencies"]
    opener = [d for d in deps if [ident.open_chat._id, "click"] in [list(x) for x in d["targets"]]]
    assert opener and refs.tabs_block._id in opener[0]["outputs"] and refs.chat.adapter._id in opener[0]["outputs"]


def test_preview_fills_both_languages_with_their_own_names():
    frame_update, message = card.on_preview("en", *NAMES)
    frame = frame_update["value"]
    assert set(frame["lang"]) == {"en", "zh"} and "212" in message
    zh = frame[frame["lang"] == "zh"]
    en = frame[frame["lang"] == "en"]
    assert zh["output"].str.contains("小新").any() and not zh["output"].str.contains("Nova").any()
    assert en["output"].str.contains("Nova").any() and not en["output"].str.contains("小新").any()
    assert not frame["output"].str.contains("{{", regex=False).any()


def test_preview_with_an_empty_name_says_why():
    update, message = card.on_preview("zh", "", "", "新星实验室", "Nova Labs")
    assert "name" in message and "错误" in message


def test_save_writes_an_editable_dataset_and_never_overwrites(ctx):
    first = card.on_save(ctx, "en", *NAMES)
    second = card.on_save(ctx, "en", *NAMES)
    files = sorted(ctx.uploads_root.glob("identity-Nova*.jsonl"))
    assert len(files) == 2 and str(files[0]) in first + second
    rows = [json.loads(x) for x in files[0].read_text(encoding="utf-8").splitlines()]
    assert len(rows) == 212 and all("{{" not in r["output"] for r in rows)
    assert str(files[0]) in ctx.dataset_files()  # the Data tab lists it


def test_start_submits_the_preset_with_the_four_fields(ctx):
    message, run = card.on_start(ctx, "en", "小智", "Zhi", "智研所", "Zhi Institute")
    assert Path(run).name in message and ("started" in message or "queued" in message)
    cfg = C.load(f"{run}/{rundir.CONFIG}")
    assert (cfg.identity.name_zh, cfg.identity.name_en, cfg.identity.author_zh, cfg.identity.author_en) == \
        ("小智", "Zhi", "智研所", "Zhi Institute")
    shipped = C.load(presets_dir() / "self_cognition.yaml")
    assert cfg.lora.target_modules == shipped.lora.target_modules and cfg.identity.probe
    assert "studio.train" in (Path(run) / rundir.COMMAND).read_text(encoding="utf-8")


def test_start_with_braces_in_a_name_is_refused_with_the_reason(ctx, monkeypatch):
    monkeypatch.setattr(card.gr, "Warning", lambda *a, **k: None)
    message, run = card.on_start(ctx, "en", "小新", "No{va}", "新星实验室", "Nova Labs")
    assert "braces" in message and not list((ctx.runs_root).glob("*/config.yaml"))


def _probe_rows():
    def ident(lang, setting, q, base_ok, tuned_ok):
        return {"kind": "identity", "lang": lang, "setting": setting, "question": q, "base_answer": f"base: {q}",
                "tuned_answer": f"tuned: {q}", "base_ok": base_ok, "tuned_ok": tuned_ok}

    def general(lang, split, q, base_ok, tuned_ok, kl):
        return {"kind": "general", "lang": lang, "split": split, "question": q, "base_answer": f"base: {q}",
                "tuned_answer": None if tuned_ok is None else f"tuned: {q}", "base_ok": base_ok, "tuned_ok": tuned_ok,
                "kl": kl, "kl_reverse": kl, "kl_tokens": 0 if kl is None else 10}
    return [ident("en", "none", "Who are you?", False, True), ident("en", "second_turn", "Who are you?", False, True),
            ident("zh", "none", "你是谁？", False, True), ident("zh", "user_system", "谁开发了你？", False, False),
            general("en", "test", "Capital of France?", True, True, 0.01),
            general("zh", "test", "一年有几个月？", True, False, 0.03),
            general("en", "test", "2+2?", False, None, None), general("en", "dev", "3+3?", True, True, 0.5)]


def test_tick_shows_progress_then_the_verdict_and_the_answers_flipped_first(ctx, tmp_path):
    run = tmp_path / "runs" / "sc-run"
    (run / rundir.ADAPTER).mkdir(parents=True)
    rundir.write_status(run, state="running", step=3, max_steps=10)
    bar, note, view, table, chat_btn, sig = card.on_tick(ctx, str(run), "en", None)
    assert "sc-run" in bar and note == "" and table["visible"] is False and view["visible"] is False
    assert card.on_tick(ctx, str(run), "en", sig) == [card.gr.skip()] * 6  # nothing changed: no redraw

    rows = _probe_rows()
    (run / probe.PROBE_FILE).write_text(json.dumps(dict(probe.summarize(rows, "test"), rows=rows)), encoding="utf-8")
    rundir.write_status(run, state="finished", step=10, max_steps=10)
    bar, summary, view, table, chat_btn, _ = card.on_tick(ctx, str(run), "zh", sig)
    assert chat_btn["visible"] is True and table["visible"] is True and view["visible"] is True
    frame = table["value"]
    assert list(frame.columns) == ["类型", "语言", "设置 / 划分", "变化", "问题", "基础模型回答", "微调后回答"] and len(frame) == 8
    assert list(frame.iloc[0, :4]) == ["general", "zh", "test", "✓→✗"]  # the lost answer first
    assert list(frame.iloc[1, :3]) == ["identity", "zh", "用户系统提示"]  # then the identity miss, its setting translated
    assert list(frame[frame["问题"] == "2+2?"]["微调后回答"]) == ["– （未提问：基础模型答错了）"]  # the base got it wrong
    assert "en 0% → **100%**" in summary and "zh 0% → **50%**（最弱：用户系统提示 0%）" in summary
    assert "（test 划分）" in summary and "**50%**（1/2）" in summary and "0.0200" in summary  # KL of the test split
    assert card.chat_target(str(run)) == str(run / rundir.ADAPTER)

    lost = card.on_view(ctx, str(run), "en", "lost")["value"]
    assert len(lost) == 1 and lost.iloc[0]["Change"] == "✓→✗"
    assert len(card.on_view(ctx, str(run), "en", "identity")["value"]) == 4
    assert card.on_view(ctx, None, "en", "all") == card.gr.skip()
    assert card.on_view(ctx, "/etc", "en", "all") == card.gr.skip()  # only folders the page may read


def test_summary_reads_a_probe_json_from_before_the_settings_and_the_kl(ctx):
    old = {"identity": {"base": 0.0, "tuned": 1.0, "n": 2, "per_lang": {"en": {"base": 0.0, "tuned": 1.0, "n": 2}}},
           "retention": {"score": 0.9, "kept": 9, "base_right": 10, "n": 20}}
    text = card.summary_markdown(old, "en")
    assert "en 0% → **100%**" in text and "**90%** of the" in text and "weakest" not in text


def test_open_in_chat_selects_the_chat_tab_with_the_adapter_and_its_base(ctx, tmp_path):
    run = tmp_path / "runs" / "sc-run"
    (run / rundir.ADAPTER).mkdir(parents=True)
    cfg = C.RunConfig()
    cfg.model.name_or_path = str(tmp_path / "models" / "base")  # a base the page may use (an allowed folder)
    C.save(cfg, run / rundir.CONFIG)
    tabs, picker, adapter, model = app._open_in_chat(ctx, card.chat_target(str(run)))
    assert tabs.selected == "chat" and adapter == str(run / rundir.ADAPTER) and model == cfg.model.name_or_path
    assert picker["value"] == str(run / rundir.ADAPTER)
    assert app._open_in_chat(ctx, None) == [card.gr.skip()] * 4
