"""Unit tier: the RunConfig tree, its YAML round trip, overrides, validation messages and every shipped preset."""

from __future__ import annotations

from pathlib import Path

import pytest

from studio import config as C

PRESETS = sorted((Path(__file__).resolve().parents[2] / "presets").glob("*.yaml"))


def test_every_field_has_help_and_valid_default():
    specs = C.field_specs()
    assert len(specs) > 40
    for s in specs:
        assert s.help, f"{s.key} has no help text"
        assert s.help_zh, f"{s.key} has no Chinese help text"
        if s.choices:
            assert s.default in s.choices, s.key
    cfg = C.RunConfig()
    cfg.data.datasets = ["x.jsonl"]
    assert C.validate(cfg) == []


def test_yaml_round_trip(tmp_path):
    cfg = C.load(None, ["training.learning_rate=3e-4", "lora.r=16", "data.datasets=[a.jsonl, b.json@5]",
                        "data.train_on_prompt=true", "method.finetuning_type=freeze", "identity.name_zh=小明"])
    C.save(cfg, tmp_path / "c.yaml")
    back = C.load(tmp_path / "c.yaml")
    assert back == cfg
    assert back.training.learning_rate == 3e-4 and back.lora.r == 16 and back.data.train_on_prompt is True
    assert back.identity.name_zh == "小明"
    assert C.diff(cfg, back) == []


def test_precedence_defaults_preset_override(tmp_path):
    p = tmp_path / "p.yaml"
    p.write_text("training:\n  learning_rate: 1.0e-3\n  max_steps: 7\n")
    cfg = C.load(p, ["training.max_steps=9"])
    assert cfg.training.learning_rate == 1e-3  # preset over default
    assert cfg.training.max_steps == 9  # override over preset
    assert cfg.lora.r == C.LoraSection().r  # default kept


@pytest.mark.parametrize("override, fragment", [
    ("training.learning_rate=-1", "training.learning_rate=-1.0: must be > 0.0 and <= 1.0"),
    ("lora.r=0", "lora.r=0: must be >= 1 and <= 1024"),
    ("method.finetuning_type=magic", "method.finetuning_type='magic': must be one of lora, qlora, freeze, full"),
    ("quantization.bits=3", "quantization.bits=3: must be one of 4, 8"),
])
def test_bad_values_are_named_with_their_range(override, fragment):
    cfg = C.load(None, [override, "data.datasets=[x.jsonl]"])
    errors = C.validate(cfg)
    assert any(fragment in e for e in errors), errors


def test_type_errors_and_unknown_keys_are_named():
    with pytest.raises(C.ConfigError, match="training.per_device_train_batch_size: 'many' is not a valid int"):
        C.load(None, ["training.per_device_train_batch_size=many"])
    with pytest.raises(C.ConfigError, match="did you mean 'learning_rate'"):
        C.load(None, ["training.lerning_rate=1"])
    with pytest.raises(C.ConfigError, match="unknown section 'trainng'.*training"):
        C.from_dict({"trainng": {"x": 1}})
    with pytest.raises(C.ConfigError, match="expected section.key=value"):
        C.load(None, ["learning_rate"])


def test_missing_dataset_is_an_error():
    assert any("data.datasets" in e for e in C.validate(C.RunConfig()))


def test_relative_dataset_paths_become_absolute(tmp_path, monkeypatch):
    (tmp_path / "d.jsonl").write_text("{}\n")
    (tmp_path / "c.yaml").write_text("data:\n  datasets: [d.jsonl@3]\n")
    monkeypatch.chdir("/")
    cfg = C.load(tmp_path / "c.yaml")
    assert cfg.data.datasets == [f"{tmp_path / 'd.jsonl'}@3"]


@pytest.mark.parametrize("preset", PRESETS, ids=[p.name for p in PRESETS])
def test_every_preset_loads_and_validates(preset):
    text = preset.read_text(encoding="utf-8")
    assert text.startswith("#"), f"{preset.name}: a preset opens with a header comment saying what it does"
    assert "studio train" in text.split("\n\n")[0] or "studio train" in text, f"{preset.name}: header shows the command"
    cfg = C.load(preset)
    assert C.validate(cfg) == []
    for spec in cfg.data.datasets:
        assert Path(spec.split("#")[0].split("@")[0]).exists(), f"{preset.name}: dataset {spec} not found"
