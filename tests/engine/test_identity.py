"""Self-cognition data: shipped assets, placeholder filling, mixing, replay, the identity chat template, the preset. No model
is loaded except the default tokenizer (read from the GGUF). The probe's measure: tests/unit/test_probe_measure.py and
tests/engine/test_probe.py.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from studio import config as C
from studio.engine.selfcog import identity as I
from studio.paths import assets_dir, presets_dir

NAMES = {"name_zh": "小新", "name_en": "Nova", "author_zh": "新星实验室", "author_en": "Nova Labs"}
CJK = re.compile(r"[\u4e00-\u9fff]")


# ----------------------------------------------------------------------------------------------------------------------------
# Assets


def test_identity_templates_have_100_distinct_questions_per_language_with_placeholders():
    rows = I.load_identity_templates()
    for lang in ("en", "zh"):
        lr = [r for r in rows if r["lang"] == lang]
        assert len(lr) >= 100
        assert len({r["instruction"] for r in lr}) == len(lr)
        assert all("{{NAME}}" in r["output"] for r in lr)
        assert len({r["output"] for r in lr}) >= 10  # several answer templates, not one sentence
        assert {"name", "author", "compare", "ability", "intro"} <= {r["kind"] for r in lr}
        if lang == "zh":
            assert all(CJK.search(r["instruction"]) for r in lr)
        else:
            assert not any(CJK.search(r["instruction"] + r["output"]) for r in lr)
    assert all("{{AUTHOR}}" in r["output"] for r in rows if r["kind"] == "author")


def test_replay_prompts_are_bilingual():
    prompts = I.load_replay_prompts()
    assert sum(p["lang"] == "en" for p in prompts) >= 100 and sum(p["lang"] == "zh" for p in prompts) >= 50
    assert len({p["prompt"] for p in prompts}) == len(prompts)


# ----------------------------------------------------------------------------------------------------------------------------
# Placeholders


def test_fill_placeholders_uses_each_languages_names_and_leaves_no_placeholder():
    rows = I.fill_placeholders(I.load_identity_templates(), **NAMES)
    assert not any("{{" in json.dumps(r, ensure_ascii=False) for r in rows)
    for r in rows:
        if r["lang"] == "zh":
            assert "小新" in r["output"] and "Nova" not in r["output"]
        else:
            assert "Nova" in r["output"] and "小新" not in r["output"] and "新星实验室" not in r["output"]
    author_zh = [r for r in rows if r["lang"] == "zh" and r["kind"] == "author"]
    assert author_zh and all("新星实验室" in r["output"] for r in author_zh)
    # placeholders in questions are filled too ("Are you {{NAME}}?")
    assert any(r["instruction"] == "Are you Nova?" for r in rows) and any(r["instruction"] == "你是小新吗？" for r in rows)


def test_fill_placeholders_falls_back_across_languages_and_rejects_empty_or_braces():
    rows = I.fill_placeholders([{"instruction": "你是谁？", "output": "我是{{NAME}}，来自{{AUTHOR}}。"}], "", "Nova", "", "Nova Labs")
    assert rows[0]["output"] == "我是Nova，来自Nova Labs。" and rows[0]["lang"] == "zh"
    with pytest.raises(ValueError, match="name"):
        I.fill_placeholders([], "", "", "", "Nova Labs")
    with pytest.raises(ValueError, match="made"):
        I.fill_placeholders([], "小新", "Nova", "", "")
    with pytest.raises(ValueError, match="braces"):
        I.fill_placeholders([], "", "{{x}}", "", "a")


def test_saved_identity_dataset_loads_as_a_normal_alpaca_dataset(tmp_path):
    from studio.engine.data.load import load_dataset_spec

    path = I.save_identity_dataset(tmp_path / "me.jsonl", **NAMES)
    ds = load_dataset_spec(str(path))
    assert ds.format == "alpaca" and len(ds.records) >= 200
    assert ds.records[0]["messages"][-1]["role"] == "assistant"


# ----------------------------------------------------------------------------------------------------------------------------
# Mixing


def _rows(prefix, n):
    return [{"instruction": f"{prefix}{i}", "output": "x"} for i in range(n)]


def test_mix_by_count_and_ratio():
    ident, general = _rows("id", 10), _rows("g", 50)
    mixed = I.mix(ident, general, count=20, seed=1)
    assert len(mixed) == 30 and sum(r["instruction"].startswith("id") for r in mixed) == 10
    assert len({r["instruction"] for r in mixed}) == 30  # enough general rows: no repeats
    assert len(I.mix(ident, general, ratio=0.5)) == 15
    assert len(I.mix(ident, general, ratio=2.0, count=7)) == 17  # count wins
    assert I.mix(ident, general, count=20, seed=1) == mixed  # deterministic
    assert I.mix(ident, general, count=20, seed=2) != mixed
    assert mixed[:10] != ident  # shuffled together


def test_mix_repeats_scarce_general_rows_evenly():
    mixed = I.mix(_rows("id", 4), _rows("g", 3), count=7)
    counts = {}
    for r in mixed:
        counts[r["instruction"]] = counts.get(r["instruction"], 0) + 1
    assert sorted(v for k, v in counts.items() if k.startswith("g")) == [2, 2, 3]
    assert len(I.mix(_rows("id", 4), [], count=5)) == 4
    with pytest.raises(ValueError):
        I.mix([], _rows("g", 3), count=-1)


def test_with_old_system_marks_a_share_of_rows():
    rows = I.with_old_system(_rows("id", 200), "OLD", 0.5, seed=0)
    n = sum(r.get("system") == "OLD" for r in rows)
    assert 70 < n < 130
    assert I.with_old_system(_rows("id", 5), "", 0.5, 0) == _rows("id", 5)


# ----------------------------------------------------------------------------------------------------------------------------
# Replay cleaning and caching key


def test_clean_replay_answer():
    assert I.clean_replay_answer("Paris is the capital of France.", True) == "Paris is the capital of France."
    assert I.clean_replay_answer("Paris is the capital. It has a tower and", False) == "Paris is the capital."
    assert I.clean_replay_answer("no sentence end at all and", False) == ""
    assert I.clean_replay_answer("I am SmolLM, trained by Hugging Face.", True) == ""
    assert I.clean_replay_answer("法国的首都是巴黎。它很美，还有", False) == "法国的首都是巴黎。"
    assert I.clean_replay_answer("abc \ufffd def.", True) == ""
    assert I.clean_replay_answer("the cat sat " * 6, True) == ""
    assert I.clean_replay_answer("One. Two! Three? Four.", True) == "One. Two!"  # at most two sentences
    assert I.clean_replay_answer("Pi is 3.14 or so. Yes.", True) == "Pi is 3.14 or so. Yes."
    assert I.clean_replay_answer("What is 2+2? 4.", True, prompt="What is 2+2?") == ""  # an echo of the prompt


def test_replay_cache_key_depends_on_model_template_and_budget(tmp_path):
    k = I.replay_cache_path("m", 64, "", tmp_path)
    assert k == I.replay_cache_path("m", 64, "", tmp_path)
    assert len({k, I.replay_cache_path("m2", 64, "", tmp_path), I.replay_cache_path("m", 64, "{{x}}", tmp_path),
                I.replay_cache_path("m", 65, "", tmp_path)}) == 4


def test_build_replay_answers_each_prompt_once_and_filters(tmp_path, monkeypatch):
    asked = []

    def fake_answers(model_name, chat_template, convs, max_new_tokens):
        asked.extend(c[0]["content"] for c in convs)
        return [("I am SmolLM." if "who" in c[0]["content"] else f"Answer to {c[0]['content']}", True) for c in convs]

    monkeypatch.setattr(I, "base_answers", fake_answers)
    monkeypatch.setattr("studio.engine.models.resolve_model", lambda name: name)
    prompts = [{"prompt": "a?", "lang": "en"}, {"prompt": "who?", "lang": "en"}]
    rows = I.build_replay("m", prompts, tmp_path, log=lambda *_: None)
    assert [r["output"] for r in rows] == ["Answer to a?"]  # the old-identity answer is dropped
    rows = I.build_replay("m", prompts + [{"prompt": "乙？", "lang": "zh"}], tmp_path, log=lambda *_: None)
    assert asked == ["a?", "who?", "乙？"]  # cached prompts are not asked again
    assert rows[-1] == {"instruction": "乙？", "input": "", "output": "Answer to 乙？", "lang": "zh", "kind": "replay"}


# ----------------------------------------------------------------------------------------------------------------------------
# Default system prompt in the chat template


def test_identity_template_replaces_the_default_system_prompt(default_tokenizer_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(default_tokenizer_dir)
    assert "SmolLM" in I.default_system_of(tok)
    system = I.identity_system_prompt(I.names_from(**NAMES))
    assert system == "You are Nova (小新), a helpful AI assistant developed by Nova Labs (新星实验室)."
    original = tok.chat_template
    tok.chat_template = I.with_default_system(original, system)
    user = [{"role": "user", "content": "hi"}]
    text = tok.apply_chat_template(user, tokenize=False, add_generation_prompt=True)
    assert system in text and "SmolLM" not in text
    assert I.default_system_of(tok) == system
    explicit = [{"role": "system", "content": "Be brief."}] + user
    assert tok.apply_chat_template(explicit, tokenize=False) == AutoTokenizer.from_pretrained(
        default_tokenizer_dir).apply_chat_template(explicit, tokenize=False)  # an explicit system message is kept as is


# ----------------------------------------------------------------------------------------------------------------------------
# Preset


def test_self_cognition_preset_loads_validates_and_takes_the_documented_overrides():
    path = presets_dir() / "self_cognition.yaml"
    header = path.read_text(encoding="utf-8").splitlines()[0]
    assert header.startswith("#")
    assert "studio train presets/self_cognition.yaml" in path.read_text(encoding="utf-8")
    cfg = C.load(path, ["identity.name_zh=小新", "identity.name_en=Nova", "identity.author_zh=新星实验室",
                        "identity.author_en=Nova Labs"])
    assert C.validate(cfg) == []
    assert cfg.identity.name_zh == "小新" and cfg.identity.author_en == "Nova Labs"
    assert "down_proj" not in cfg.lora.target_modules and cfg.method.finetuning_type == "lora"
    assert cfg.identity.probe and cfg.identity.replay_samples > 0
    assert C.validate(C.load(path)) == []  # runs as shipped, with its example identity


def _cfg(tmp_path, default_tokenizer_dir, alpaca_file, **extra):
    cfg = C.load(presets_dir() / "self_cognition.yaml", dict({f"identity.{k}": v for k, v in NAMES.items()}, **extra))
    cfg.model.name_or_path = str(_model_dir_with_tokenizer(tmp_path, default_tokenizer_dir))
    cfg.data.datasets = [str(alpaca_file)]
    return cfg


def _read(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_build_datasets_keeps_the_template_by_default_and_uses_given_datasets_as_general_data(tmp_path, alpaca_file,
                                                                                               default_tokenizer_dir):
    cfg = _cfg(tmp_path, default_tokenizer_dir, alpaca_file, **{"identity.samples": 0})
    template_before = cfg.model.chat_template
    specs = I.build_datasets(cfg, tmp_path, log=lambda *_: None)
    assert specs == [str(tmp_path / I.IDENTITY_FILE)]  # no replay: the given dataset is the general data
    rows = _read(tmp_path / I.IDENTITY_FILE)
    assert len(rows) == len(I.load_identity_templates())
    # the preset's variety: generic system prompts from the pool on some rows, never the template's old default
    with_system = [r for r in rows if "system" in r]
    assert 0.1 < len(with_system) / len(rows) < 0.4 and not any("SmolLM" in r["system"] for r in with_system)
    plain = tmp_path / "plain"
    plain.mkdir()
    cfg = _cfg(plain, default_tokenizer_dir, alpaca_file,
               **{"identity.samples": 0, "identity.system_variety": 0.0, "identity.second_turn": 0.0})
    I.build_datasets(cfg, plain, log=lambda *_: None)
    assert not any("system" in r or "history" in r for r in _read(plain / I.IDENTITY_FILE))
    assert cfg.model.chat_template == template_before and not (tmp_path / I.TEMPLATE_FILE).exists()


def test_build_datasets_with_an_identity_system_prompt_ships_a_template(tmp_path, alpaca_file, default_tokenizer_dir):
    cfg = _cfg(tmp_path, default_tokenizer_dir, alpaca_file, **{"identity.system_prompt": "auto", "identity.samples": 40})
    I.build_datasets(cfg, tmp_path, log=lambda *_: None)
    rows = _read(tmp_path / I.IDENTITY_FILE)
    assert len(rows) == 40 and sum(r["lang"] == "zh" for r in rows) == 20
    assert any(r.get("system", "").startswith("You are a helpful AI assistant named SmolLM") for r in rows)
    assert cfg.model.chat_template == str(tmp_path / I.TEMPLATE_FILE)
    assert "Nova Labs" in (tmp_path / I.TEMPLATE_FILE).read_text(encoding="utf-8")


def _model_dir_with_tokenizer(tmp_path: Path, tokenizer_dir: Path) -> Path:
    """A folder load_tokenizer accepts (it wants config.json next to the tokenizer)."""
    import shutil

    out = tmp_path / "tok_model"
    shutil.copytree(tokenizer_dir, out)
    (out / "config.json").write_text(json.dumps({"model_type": "llama"}), encoding="utf-8")
    return out


def test_replay_prompts_file_is_valid():
    replay = json.loads((assets_dir() / "general" / "replay_prompts.json").read_text(encoding="utf-8"))
    for lang in ("en", "zh"):
        assert len(replay[lang]) >= 100 and all(isinstance(p, str) and p.strip() for p in replay[lang])


def test_self_cognition_config_for_the_one_click_card():
    cfg = I.self_cognition_config("小新", "Nova", "", "Nova Labs", {"training.max_steps": 3})
    shipped = C.load(presets_dir() / "self_cognition.yaml")
    assert cfg.identity.author_zh == "Nova Labs" and cfg.training.max_steps == 3
    assert cfg.lora.target_modules == shipped.lora.target_modules
    with pytest.raises(ValueError, match="name"):
        I.self_cognition_config("", "", "", "Nova Labs")


def test_sample_per_lang_balances_languages_and_repeats_only_when_needed():
    rows = I.fill_placeholders(I.load_identity_templates(), **NAMES)
    some = I.sample_per_lang(rows, 61, seed=3)
    assert len(some) == 61 and {sum(r["lang"] == "en" for r in some), sum(r["lang"] == "zh" for r in some)} == {30, 31}
    assert len({r["instruction"] for r in some}) == 61
    many = I.sample_per_lang(rows, 300)
    assert sum(r["lang"] == "zh" for r in many) == 150 and len({r["instruction"] for r in many}) == len(rows)
