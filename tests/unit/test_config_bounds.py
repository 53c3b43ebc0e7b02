"""Unit tier: every config value is bounded and typed (issue #13, items 7 and 8): numbers finite and inside their range,
lists never mappings, text never a NUL; the YAML loader refuses aliases, duplicate keys, deep nesting and big files.
The same coercion serves config files, ``--set`` overrides, the API's override dict and the Train form."""

from __future__ import annotations

import math
import time

import pytest

from studio import config as C
from studio import configinput as CI

NUMBERS = [s for s in C.field_specs() if s.type in (int, float) and not s.choices]


def test_every_number_has_a_finite_lower_and_upper_bound():
    assert len(NUMBERS) > 30
    for s in NUMBERS:
        assert s.min is not None or s.gt is not None, f"{s.key} has no lower bound"
        assert s.max is not None and math.isfinite(s.max), f"{s.key} has no upper bound"
        assert (s.min if s.min is not None else s.gt) <= s.default <= s.max, s.key


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf"), "nan", "-Infinity", "1e400", "-1e999"])
def test_non_finite_numbers_are_refused_for_every_numeric_field(value):
    for s in NUMBERS:
        with pytest.raises(C.ConfigError, match=rf"^{s.key}: .* is not a finite number \(expected .*\)$"):
            C.coerce(s, value)


def test_validate_refuses_non_finite_values_set_directly():
    cfg = C.RunConfig()
    cfg.data.datasets = ["x.jsonl"]
    cfg.training.learning_rate = float("nan")
    cfg.training.max_grad_norm = float("inf")
    errors = C.validate(cfg)
    assert "training.learning_rate=nan: must be > 0.0 and <= 1.0" in errors
    assert "training.max_grad_norm=inf: must be >= 0.0 and <= 1000000.0" in errors


def spec(key: str) -> C.FieldSpec:
    return next(s for s in C.field_specs() if s.key == key)


@pytest.mark.parametrize("key, value, expected", [
    ("training.max_steps", "1e3", 1000),
    ("training.max_steps", 7.0, 7),
    ("training.max_steps", " 12 ", 12),
    ("lora.dropout", "0.1", 0.1),
    ("lora.dropout", 0, 0.0),
    ("data.train_on_prompt", 1, True),
    ("data.train_on_prompt", "off", False),
    ("training.gradient_checkpointing", False, "off"),  # YAML reads `off` as false
    ("training.gradient_checkpointing", True, "on"),
    ("data.datasets", "a.jsonl, b.jsonl", ["a.jsonl", "b.jsonl"]),
    ("data.datasets", ("a.jsonl", 5), ["a.jsonl", "5"]),
    ("identity.name_en", 123, "123"),
])
def test_coerce_accepts(key, value, expected):
    assert C.coerce(spec(key), value) == expected


@pytest.mark.parametrize("key, value, fragment", [
    ("training.max_steps", "1.5", "'1.5' is not a valid int"),
    ("training.max_steps", 2.5, "2.5 is not a valid int"),
    ("training.max_steps", True, "True is not a valid int"),
    ("training.max_steps", [3], "[3] is not a valid int"),
    ("lora.dropout", False, "False is not a valid float"),
    ("lora.dropout", 10**400, "is not a valid float"),
    ("data.train_on_prompt", 2, "2 is not a valid bool"),
    ("data.train_on_prompt", "maybe", "'maybe' is not a valid bool"),
    ("data.datasets", {"a": 1}, "{'a': 1} is not a valid list (expected a list of text entries, at most 1000)"),
    ("data.datasets", [["a"]], "is not a valid list"),
    ("data.datasets", [None], "is not a valid list"),
    ("data.datasets", ["x"] * 1001, "is not a valid list"),
    ("data.datasets", 5, "5 is not a valid list"),
    ("model.name_or_path", ["a"], "['a'] is not a valid str"),
    ("model.name_or_path", {"a": 1}, "{'a': 1} is not a valid str"),
    ("model.name_or_path", "a\x00b", "is not a valid str (expected text without NUL characters"),
    ("model.chat_template", "x" * (CI.MAX_TEXT + 1), "is not a valid str"),
])
def test_coerce_refuses_with_the_key_and_what_it_takes(key, value, fragment):
    with pytest.raises(C.ConfigError, match=rf"^{key}: ") as exc:
        C.coerce(spec(key), value)
    assert fragment in str(exc.value)
    assert len(str(exc.value)) < 300  # a huge value is shown shortened


def test_overrides_use_the_same_rules():
    cfg = C.load(None, ["identity.name_en=0x10", "training.gradient_checkpointing=off", "data.datasets=[a.jsonl, b.jsonl]",
                        "training.max_steps=1e3", "output.run_name=yes"])
    assert cfg.identity.name_en == "0x10" and cfg.output.run_name == "yes"  # text fields keep what was typed
    assert cfg.training.gradient_checkpointing == "off" and cfg.training.max_steps == 1000
    assert [d.rsplit("/", 1)[-1] for d in cfg.data.datasets] == ["a.jsonl", "b.jsonl"]
    with pytest.raises(C.ConfigError, match=r"data.datasets: \{'a': 1\} is not a valid list"):
        C.load(None, ["data.datasets={a: 1}"])
    with pytest.raises(C.ConfigError, match="override 'lora.r': line 1: anchors and aliases"):
        C.load(None, ["lora.r=&x 4"])
    # the API's override dict (typed JSON values) and the Train form go through the same coerce
    with pytest.raises(C.ConfigError, match="training.learning_rate: nan is not a finite number"):
        C.load(None, {"training.learning_rate": float("nan")})
    with pytest.raises(C.ConfigError, match="training.max_steps: True is not a valid int"):
        C.load(None, {"training.max_steps": True})


def test_train_form_reports_non_finite_and_out_of_range_values():
    from studio.ui.tabs.train import values_to_config

    specs = C.field_specs()
    values = {s.key: s.default for s in specs} | {"data.datasets": "x.jsonl", "training.learning_rate": float("inf"),
                                                   "training.max_steps": 10**14}
    _, errors = values_to_config(specs, [values[s.key] for s in specs])
    assert any(e.startswith("training.learning_rate: inf is not a finite number") for e in errors), errors
    assert "training.max_steps=100000000000000: must be >= -1 and <= 10000000" in errors


# -- the YAML loader ---------------------------------------------------------------------------------------------------------


def test_alias_bomb_is_refused_at_once():
    bomb = "a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
        f"{c}: &{c} [{', '.join([f'*{p}'] * 9)}]\n" for p, c in zip("abcdefgh", "bcdefghi"))
    start = time.perf_counter()
    with pytest.raises(CI.YamlRefused, match=r"^bomb.yaml: line 1: anchors and aliases \(&name, \*name\) are not allowed"):
        CI.load_yaml(bomb, "bomb.yaml")
    assert time.perf_counter() - start < 1.0


@pytest.mark.parametrize("text, message", [
    ("lora:\n  r: &x 4\n  alpha: *x\n", "c.yaml: line 2: anchors and aliases"),
    ("lora: {r: 4}\nx: *y\n", "c.yaml: line 2: anchors and aliases"),
    ("lora:\n  r: 4\n  alpha: 8\n  r: 16\n", "c.yaml: line 4: duplicate key 'r' (first given on line 2)"),
    ("lora: {r: 4}\nlora: {r: 8}\n", "c.yaml: line 2: duplicate key 'lora' (first given on line 1)"),
    ("x: " + "[" * 30 + "]" * 30 + "\n", "c.yaml: line 1: nested more than 20 levels deep"),
    ("# " + "x" * CI.MAX_YAML_BYTES, "c.yaml: 1,048,578 characters, over the 1024 KB limit"),
])
def test_loader_refusals_name_the_line(text, message):
    with pytest.raises(CI.YamlRefused) as exc:
        CI.load_yaml(text, "c.yaml")
    assert str(exc.value).startswith(message), str(exc.value)


@pytest.mark.parametrize("text, message", [
    ("lora:\n  r: [4\n", "c.yaml: line 3: not valid YAML"),
    ("x: !!python/object/apply:os.system [ls]\n", "c.yaml: line 1: not valid YAML: could not determine a constructor"),
    ("x: 1\ny: a\x00b\n", "c.yaml: line 2: not valid YAML: unacceptable character #x0000"),
    ("x: " + "9" * 5000 + "\n", "c.yaml: not valid YAML: Exceeds the limit"),
])
def test_invalid_yaml_is_named_with_the_line(text, message):
    with pytest.raises(CI.YamlError) as exc:
        CI.load_yaml(text, "c.yaml")
    assert str(exc.value).startswith(message), str(exc.value)


def test_loader_reads_ordinary_configs():
    data = CI.load_yaml("training:\n  learning_rate: 1.0e-4\n  gradient_checkpointing: off\ndata:\n  datasets: [a, 'b#c@3']\n",
                       "c.yaml")
    assert data == {"training": {"learning_rate": 1e-4, "gradient_checkpointing": False}, "data": {"datasets": ["a", "b#c@3"]}}


@pytest.mark.parametrize("raw, message", [
    (b"lora:\n  r: 4\n# caf\xe9\n", "c.yaml: line 3: not UTF-8 text"),
    ("lora:\n  r: 4\n".encode("utf-16"), "c.yaml: the file is UTF-16 text; save it as UTF-8"),
    ("lora:\n  r: 4\n".encode("utf-32"), "c.yaml: the file is UTF-32 text; save it as UTF-8"),
    (b"#" * (CI.MAX_YAML_BYTES + 1), "c.yaml: over the 1024 KB limit for a config file"),
])
def test_config_file_encoding_and_size(tmp_path, raw, message):
    path = tmp_path / "c.yaml"
    path.write_bytes(raw)
    with pytest.raises(C.ConfigError) as exc:
        C.load(path)
    assert str(exc.value).startswith(f"{tmp_path}/{message}"), str(exc.value)
    (tmp_path / "ok.yaml").write_bytes(b"\xef\xbb\xbflora:\n  r: 4\n")  # a UTF-8 byte-order mark is fine
    assert C.load(tmp_path / "ok.yaml").lora.r == 4
