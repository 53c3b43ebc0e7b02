"""The self-cognition probe on the tiny model (random weights: its answers are noise, the plumbing is not): an adapter that
changes nothing (LoRA with B = 0) keeps every answer, so retention is 100% and KL is 0, and a changed adapter moves KL;
the default-system setting renders exactly like no system prompt; the benchmark runs the preset for a pair end to end.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import self_cognition as bench
from studio import config as C
from studio.engine.selfcog import probe as P
from studio.engine.selfcog import questions as Q
from studio.engine.selfcog.identity import default_system_of
from studio.paths import presets_dir

NAMES = {"identity.name_zh": "小新", "identity.name_en": "Nova", "identity.author_zh": "新星实验室",
         "identity.author_en": "Nova Labs"}


@pytest.fixture(scope="module")
def talking_model_dir(tiny_model_dir, tmp_path_factory) -> Path:
    """The tiny model with its weights redrawn wider (std 0.5): the fixture's answers are blank lines, these are words
    (noise, but text to score and to measure KL on)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    torch.manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() > 1:
                p.normal_(0, 0.5)
    out = tmp_path_factory.mktemp("talking_llama")
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(out)
    return out


def _run_with_adapter(tmp_path: Path, model_dir: Path, change: bool) -> tuple[Path, C.RunConfig]:
    """A run folder holding a LoRA adapter of the tiny model: B = 0 (PEFT's init, the identity) or random B."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = get_peft_model(AutoModelForCausalLM.from_pretrained(model_dir), LoraConfig(r=4, lora_alpha=8,
                                                                                         target_modules="all-linear"))
    if change:
        torch.manual_seed(0)
        with torch.no_grad():
            for name, p in model.named_parameters():
                if "lora_B" in name:
                    p.normal_(0, 0.5)
    run = tmp_path / ("changed" if change else "identity")
    model.save_pretrained(run / "adapter")
    cfg = C.load(presets_dir() / "self_cognition.yaml", NAMES)
    cfg.model.name_or_path = str(model_dir)
    C.save(cfg, run / "config.yaml")
    return run, cfg


def test_default_system_setting_renders_like_no_system_prompt(default_tokenizer_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(default_tokenizer_dir)
    default = default_system_of(tok)
    render = lambda m: tok.apply_chat_template(m, tokenize=False, add_generation_prompt=True)  # noqa: E731
    q = "Who built this assistant I'm talking to?"
    assert "SmolLM" in default
    assert render(Q.conversation(q, "en", "default_system", default)) == render(Q.conversation(q, "en", "none"))
    user = render(Q.conversation(q, "en", "user_system", default))
    assert "You are a helpful assistant." in user and "SmolLM" not in user
    second = render(Q.conversation(q, "en", "second_turn", default, index=2))
    opener, reply = Q.OPENERS["en"][2]
    assert second.index(opener) < second.index(reply) < second.index(q) and "SmolLM" in second


def test_an_adapter_that_changes_nothing_keeps_every_answer_with_zero_kl(talking_model_dir, tmp_path):
    from studio.engine.generate import ChatModel

    run, cfg = _run_with_adapter(tmp_path, talking_model_dir, change=False)
    general = [i for i in P.probe_items("test") if i["kind"] == "general"][:24]
    # the tiny model knows nothing: accept whatever the base says, so the base is "right" and retention has a base
    said = ChatModel(str(talking_model_dir)).generate([i["messages"] for i in general], max_new_tokens=P.MAX_NEW_TOKENS,
                                                   batch_size=P.BATCH_SIZE)
    items = [dict(i, answers=[a]) for i, a in zip(general, said) if a.strip()]
    wrong = [dict(i, id=f"wrong-{k}", answers=["qqzzxx"]) for k, i in enumerate(general[:3])]  # the base gets these wrong
    items += wrong + [i for i in P.probe_items("test", "You are SmolLM.") if i["kind"] == "identity"][:8]
    result = P.run_probes(cfg, run, log=lambda *_: None, split="test", items=items)

    saved = json.loads((run / P.PROBE_FILE).read_text(encoding="utf-8"))
    assert len(saved["rows"]) == len(items)
    asked = [r for r in saved["rows"] if r["tuned_answer"] is not None]
    assert {r["id"] for r in saved["rows"] if r["tuned_answer"] is None} == {w["id"] for w in wrong}  # base-wrong: not asked
    assert all(r["tuned_ok"] is None and r["change"] == "" for r in saved["rows"] if r["id"].startswith("wrong-"))
    assert all(P.same_answer(r["base_answer"], r["tuned_answer"]) for r in asked)
    assert all(r["tuned_answer"] == r["base_answer"] for r in asked if r["kind"] == "general")
    ret = result["retention"]
    assert ret["base_right"] >= 1 and ret["kept"] == ret["base_right"] and ret["score"] == 1.0
    assert ret["not_asked"] == len(wrong) and ret["n"] == ret["base_right"] + len(wrong)
    assert any(r["tuned"].endswith(P.NOT_ASKED) for r in P.probe_table(saved, "general"))
    assert result["kl"]["tokens"] > 0 and abs(result["kl"]["kl"]) < 1e-6 and abs(result["kl"]["kl_reverse"]) < 1e-6
    assert set(result["identity"]["per_lang"]["en"]["settings"]) == set(Q.SETTINGS)
    assert result["timings"]["base_cached"] is False
    again = P.run_probes(cfg, run, log=lambda *_: None, split="test", items=items)
    assert again["timings"]["base_cached"] is True and again["retention"] == result["retention"]


def test_identity_answers_get_room_for_a_long_maker(default_tokenizer_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(default_tokenizer_dir)
    short = {"name_en": "Nova", "name_zh": "小新", "author_en": "Nova Labs", "author_zh": "新星实验室"}
    long = dict(short, author_zh="齐鲁工业大学(山东省科学院)计算机科学与技术学部自然语言处理与认知计算研究组")
    maker_tokens = len(tok(long["author_zh"], add_special_tokens=False)["input_ids"])
    assert maker_tokens > P.MAX_NEW_TOKENS  # the maker alone would not fit in the general budget
    assert P.identity_budget(tok, long) >= P.MAX_NEW_TOKENS + maker_tokens
    assert P.MAX_NEW_TOKENS < P.identity_budget(tok, short) < P.MAX_NEW_TOKENS + 16
    assert P.same_answer("I am Nova", "I am Nova, made by Nova Labs.") and P.same_answer("我是齐鲁\ufffd", "我是齐鲁工业")
    assert not P.same_answer("I am Nova", "I am Echo")


def test_kl_moves_when_the_adapter_changes_the_model(talking_model_dir, tmp_path):
    from studio.engine.generate import ChatModel
    from studio.engine.selfcog.divergence import answer_kl, mean_kl

    convs = [Q.conversation("What is the capital of Portugal?", "en", "none"), Q.conversation("一米等于多少厘米？", "zh", "none")]
    answers = ["Lisbon is the capital.", "一米等于一百厘米。"]
    model = str(talking_model_dir)
    same = answer_kl(ChatModel(model, _run_with_adapter(tmp_path, talking_model_dir, False)[0]), convs, answers)
    moved = answer_kl(ChatModel(model, _run_with_adapter(tmp_path, talking_model_dir, True)[0]), convs, answers)
    assert [m["tokens"] for m in same] == [m["tokens"] for m in moved] and all(m["tokens"] > 3 for m in same)
    assert mean_kl(same) == pytest.approx(0, abs=1e-6)
    assert mean_kl(moved) > 1e-3 and mean_kl(moved, "kl_reverse") > 1e-3
    assert answer_kl(ChatModel(model, tmp_path / "changed"), convs, ["", "x"])[0]["kl"] is None


def test_the_tuned_side_generates_merged_with_the_same_answers(talking_model_dir, tmp_path):
    from studio.engine.generate import ChatModel

    run, _ = _run_with_adapter(tmp_path, talking_model_dir, change=True)
    chat = ChatModel(str(talking_model_dir), run)
    convs = [i["messages"] for i in P.probe_items("test", "You are SmolLM.")[:12]]
    kw = {"max_new_tokens": 16, "batch_size": 12}
    base, plain = chat.generate(convs, use_adapter=False, **kw), chat.generate(convs, use_adapter=True, **kw)
    with P._merged(chat):
        assert all(getattr(m, "merged", True) for m in chat.model.modules() if hasattr(m, "lora_A") and m.lora_A)
        merged = chat.generate(convs, use_adapter=True, **kw)
    assert merged == plain and merged != base
    assert not any(getattr(m, "merged", False) for m in chat.model.modules())  # unmerged again


def test_benchmark_runs_the_preset_for_a_pair_and_prints_its_row(talking_model_dir, tmp_path, capsys):
    out = tmp_path / "bench"
    code = bench.main(["--pair", "R2-Lite|R2-Lite|Orbit Robotics|轨道机器人", "--split", "dev", "--output-dir", str(out),
                       "--cold", "--set", f"model.name_or_path={talking_model_dir}", "--set", "training.max_steps=1",
                       "--set", "identity.samples=8", "--set", "identity.replay_samples=4",
                       "--set", "training.per_device_train_batch_size=4"])
    text = capsys.readouterr().out
    log = out / "r2-lite.log"
    assert code == 0, log.read_text(encoding="utf-8")[-3000:] if log.is_file() else text
    row = json.loads((out / "benchmark.json").read_text(encoding="utf-8"))["rows"][0]
    assert (row["name_en"], row["author_zh"], row["exit_code"]) == ("R2-Lite", "轨道机器人", 0)
    assert set(row["identity"]) == {"en", "zh"} and set(row["identity"]["zh"]["settings"]) == set(Q.SETTINGS)
    assert row["retention"]["split"] == "dev" and row["seconds"] > 0 and row["kl"] is not None
    probe = json.loads((Path(row["run_dir"]) / P.PROBE_FILE).read_text(encoding="utf-8"))
    assert probe["split"] == "dev" and {r["split"] for r in probe["rows"] if r["kind"] == "general"} == {"dev"}
    assert probe["names"]["name_en"] == "R2-Lite"
    assert "R2-Lite / Orbit Robotics" in text and "retention (dev)" in text


def test_checkpoints_are_probed_along_the_run_each_with_its_own_row(talking_model_dir, tmp_path, capsys):
    out = tmp_path / "bench"
    code = bench.main(["--pair", "Echo|回声|Harbor AI|海港智能", "--split", "dev", "--output-dir", str(out),
                       "--checkpoints", "1", "--set", f"model.name_or_path={talking_model_dir}",
                       "--set", "training.max_steps=2", "--set", "identity.samples=8", "--set", "identity.replay_samples=4",
                       "--set", "training.per_device_train_batch_size=4"])
    text = capsys.readouterr().out
    assert code == 0, text
    rows = json.loads((out / "benchmark.json").read_text(encoding="utf-8"))["rows"]
    assert [r.get("step") for r in rows] == [1, None]  # the last checkpoint is the run's own probe
    first = Path(rows[0]["run_dir"])
    assert first.name == "checkpoint-1" and (first / P.PROBE_FILE).is_file() and rows[0]["kl"] is not None
    assert Path(rows[1]["run_dir"]).name == "echo" and rows[1]["retention"]["split"] == "dev"
    assert "Echo / Harbor AI @ step 1" in text


def test_noise_adapter_levels_print_kl_and_retention_from_zero_change_upwards(talking_model_dir, tmp_path, capsys):
    code = bench.main(["--split", "dev", "--output-dir", str(tmp_path / "noise"), "--noise-adapter", "0,0.5",
                       "--set", f"model.name_or_path={talking_model_dir}"])
    rows = [line.split("|") for line in capsys.readouterr().out.splitlines() if line.strip()[:1].isdigit()]
    assert code == 0 and [r[0].strip() for r in rows] == ["0", "0.5"], rows
    (kl0, changed0), (kl1, changed1) = [(float(r[1]), int(r[3].split("/")[0])) for r in rows]
    assert kl0 == 0 and changed0 == 0  # B = 0: the base itself
    assert kl1 > 0.01 and changed1 > 0
    probe = json.loads((tmp_path / "noise" / "noise-0.5" / P.PROBE_FILE).read_text(encoding="utf-8"))
    assert {r["kind"] for r in probe["rows"]} == {"general"} and {r["split"] for r in probe["rows"]} == {"dev"}


def test_scales_probe_an_earlier_runs_adapter_with_its_change_shrunk(talking_model_dir, tmp_path, capsys):
    from safetensors.torch import load_file

    run, cfg = _run_with_adapter(tmp_path, talking_model_dir, change=True)
    cfg.identity.probe_split = "dev"
    C.save(cfg, run / "config.yaml")
    earlier = tmp_path / "earlier"
    earlier.mkdir()
    row = {"name_en": "Nova", "name_zh": "小新", "author_en": "Nova Labs", "author_zh": "新星实验室", "run_dir": str(run)}
    (earlier / "benchmark.json").write_text(json.dumps({"rows": [row]}), encoding="utf-8")
    out = tmp_path / "scaled"
    code = bench.main(["--scales", "0,0.5", "--from", str(earlier), "--output-dir", str(out)])
    text = capsys.readouterr().out
    assert code == 0, text
    rows = json.loads((out / "benchmark.json").read_text(encoding="utf-8"))["rows"]
    assert [r["scale"] for r in rows] == [0, 0.5] and "Nova / Nova Labs x 0.5" in text
    assert rows[0]["kl"] == 0 and rows[0]["retention"]["score"] in (1.0, None)  # B x 0: the base itself
    assert rows[1]["kl"] > 0.01 and rows[1]["retention"]["split"] == "dev"
    before, after = (load_file(str(d / "adapter" / "adapter_model.safetensors")) for d in (run, out / "changed-x0.5"))
    for key, value in before.items():
        assert after[key].equal(value * 0.5 if "lora_B" in key else value), key
