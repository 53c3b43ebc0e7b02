"""Unit tier: reading every file type and format, dataset_info.json folders, bad input named precisely, masks exact."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tests.helpers import write_rows

from studio.engine.data.load import DataError, load_dataset_spec, prepare_sft_data, render_example
from studio.config import DataSection

ASSETS = Path(__file__).resolve().parents[2] / "assets" / "data"
ALPACA = [{"instruction": "Add 2 and 3.", "input": "", "output": "5"},
          {"instruction": "Translate", "input": "你好", "output": "Hello", "system": "Be brief.",
           "history": [["Hi", "Hello!"]]}]
EXPECTED = [
    [{"role": "user", "content": "Add 2 and 3."}, {"role": "assistant", "content": "5"}],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"},
     {"role": "user", "content": "Translate\n你好"}, {"role": "assistant", "content": "Hello"}],
]


def _write(path: Path, rows: list[dict]) -> Path:
    return write_rows(path, rows)


@pytest.mark.parametrize("suffix", [".json", ".jsonl", ".parquet"])
def test_alpaca_every_file_type(tmp_path, suffix):
    ds = load_dataset_spec(str(_write(tmp_path / f"a{suffix}", ALPACA)))
    assert ds.format == "alpaca"
    assert [r["messages"] for r in ds.records] == EXPECTED


def test_csv_alpaca(tmp_path):
    rows = [{k: v for k, v in r.items() if k != "history"} for r in ALPACA]
    ds = load_dataset_spec(str(_write(tmp_path / "a.csv", rows)))
    assert ds.records[1]["messages"][0] == {"role": "system", "content": "Be brief."}
    assert ds.records[0]["messages"][-1]["content"] == "5"


@pytest.mark.parametrize("suffix", [".json", ".jsonl", ".parquet"])
def test_sharegpt_and_messages(tmp_path, suffix):
    share = [{"conversations": [{"from": "human", "value": "Q"}, {"from": "gpt", "value": "A"}], "system": "S"}]
    msgs = [{"messages": [{"role": "system", "content": "S"}, {"role": "user", "content": "Q"},
                          {"role": "assistant", "content": "A"}]}]
    a = load_dataset_spec(str(_write(tmp_path / f"s{suffix}", share)))
    b = load_dataset_spec(str(_write(tmp_path / f"m{suffix}", msgs)))
    assert a.format == "sharegpt" and b.format == "messages"
    assert a.records == b.records == [{"messages": msgs[0]["messages"]}]


def test_dataset_info_folder_loads_as_is():
    ds = load_dataset_spec(str(ASSETS))
    assert ds.total_rows == 44  # both entries: 40 alpaca + 4 sharegpt rows
    one = load_dataset_spec(f"{ASSETS}#demo_multiturn")
    assert one.format == "sharegpt" and len(one.records) == 4
    assert [m["role"] for m in one.records[0]["messages"]] == ["user", "assistant", "user", "assistant"]
    with pytest.raises(DataError, match="no entry 'nope'.*demo_multiturn, demo_preference, demo_sft"):
        load_dataset_spec(f"{ASSETS}#nope")


def test_dataset_info_custom_columns(tmp_path):
    _write(tmp_path / "qa.jsonl", [{"q": "Why?", "a": "Because.", "sys": "Answer."}])
    (tmp_path / "dataset_info.json").write_text(json.dumps(
        {"qa": {"file_name": "qa.jsonl", "columns": {"prompt": "q", "response": "a", "system": "sys"}}}))
    ds = load_dataset_spec(str(tmp_path))
    assert ds.records[0]["messages"] == [{"role": "system", "content": "Answer."}, {"role": "user", "content": "Why?"},
                                         {"role": "assistant", "content": "Because."}]


def test_caps_per_dataset(tmp_path):
    path = _write(tmp_path / "a.jsonl", ALPACA * 5)
    assert len(load_dataset_spec(f"{path}@3").records) == 3
    assert len(load_dataset_spec(str(path), max_rows=4).records) == 4
    assert len(load_dataset_spec(f"{path}@3", max_rows=2).records) == 2


@pytest.mark.parametrize("content, message", [
    (b'{"instruction": "a", "output": "b"}\n{"instruction": "a", "output": \n', r"line 2: invalid JSON"),
    (b"", r"the file is empty"),
    (b"\x00\x01\x02binary\x00", r"binary file"),
    (b'[{"instruction": "caf\xe9", "output": "x"}]', r"line 1: not UTF-8"),
    (b'{"foo": 1}\n', r"cannot tell the format from the columns \['foo'\]"),
    (b'[1, 2]', r"row 1: expected a JSON object"),
])
def test_bad_files_named(tmp_path, content, message):
    path = tmp_path / ("bad.jsonl" if b"\n" in content else "bad.json")
    path.write_bytes(content)
    with pytest.raises(DataError, match=message) as exc:
        load_dataset_spec(str(path))
    assert str(path) in str(exc.value)


def test_bad_row_error_or_skip(tmp_path):
    rows = [ALPACA[0], {"instruction": "x", "output": ""}, ALPACA[0], {"instruction": "y", "output": ["a", "b"]}]
    path = _write(tmp_path / "a.jsonl", rows)
    with pytest.raises(DataError, match=rf"{path}: row 2: missing or empty 'output'"):
        load_dataset_spec(str(path))
    ds = load_dataset_spec(str(path), on_bad_row="skip")
    assert len(ds.records) == 2 and len(ds.skipped) == 2
    assert "row 4: 'output' must be text" in ds.skipped[1]


def test_missing_file_and_preference_data(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        load_dataset_spec(str(tmp_path / "nope.jsonl"))
    pref = _write(tmp_path / "p.jsonl", [{"prompt": "q", "chosen": "a", "rejected": "b"}])
    with pytest.raises(DataError, match="preference data"):
        load_dataset_spec(str(pref))


def test_render_masks_exactly_the_assistant_tokens(default_tokenizer_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(default_tokenizer_dir)
    r = render_example(tok, EXPECTED[1])
    trained_text = "".join(t for t, on in r.segments if on)
    assert trained_text == "Hello!<|im_end|>\nHello<|im_end|>\n"
    assert "".join(t for t, _ in r.segments) == r.text
    trained_ids = [t for t in r.labels if t != -100]
    assert tok.decode(trained_ids) == trained_text
    assert r.num_trained == len(trained_ids) and r.num_tokens == len(r.input_ids)
    everything = render_example(tok, EXPECTED[1], train_on_prompt=True)
    assert everything.num_trained == everything.num_tokens


def test_cutoff_truncation_is_counted(default_tokenizer_dir, tmp_path):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(default_tokenizer_dir)
    long = {"instruction": "word " * 60, "input": "", "output": "ok"}
    path = _write(tmp_path / "a.jsonl", [ALPACA[0], long, {"instruction": "q", "input": "", "output": "answer " * 80}])
    data = DataSection(datasets=[str(path)])
    prepared = prepare_sft_data(data, tok, cutoff_len=48, seed=0)
    assert prepared.report["truncated_rows"] == 2
    assert prepared.report["dropped_fully_truncated"] == 1  # the long prompt leaves no answer token within 48
    assert prepared.report["train_rows"] == 2
    assert all(len(e["input_ids"]) <= 48 for e in prepared.train)


def test_val_split_and_mix(default_tokenizer_dir, tmp_path):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(default_tokenizer_dir)
    a = _write(tmp_path / "a.jsonl", [ALPACA[0]] * 10)
    b = _write(tmp_path / "b.jsonl", [ALPACA[1]] * 10)
    data = DataSection(datasets=[f"{a}@4", str(b)], val_size=0.25)
    prepared = prepare_sft_data(data, tok, cutoff_len=256, seed=0)
    assert prepared.report["train_rows"] + prepared.report["eval_rows"] == 14
    assert prepared.report["eval_rows"] == 4
    assert [d["rows_used"] for d in prepared.report["datasets"]] == [4, 10]
