"""The data doctor: planted problems are found (and only they), fixes are ordinary undoable edits, the CLI prints JSON."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest

from studio.engine.data import doctor
from studio.engine.data import view as ds
from studio.engine.data.formats import DataError
from studio.engine.data.workspace import Workspace
from tests.helpers import write_jsonl

ROOT = Path(__file__).resolve().parents[2]
WORDS = ("river mountain lantern harbor meadow copper violin orbit canyon ember glacier pepper saddle thunder velvet "
         "whistle garden bridge candle desert falcon granite island jungle kettle ladder marble needle oyster").split()


def _answer(rng: random.Random, n: int = 40) -> str:
    return " ".join(rng.choices(WORDS, k=n)) + "."


def planted_rows() -> tuple[list[dict], dict[str, set[int]]]:
    rng = random.Random(3)
    rows = [{"instruction": f"Question {i}: {' '.join(rng.choices(WORDS, k=6))}?", "input": "", "output": _answer(rng)}
            for i in range(40)]
    plant = {}
    rows.append(dict(rows[3], instruction=rows[3]["instruction"].upper(), output=rows[3]["output"] + "!!"))  # 40: same text up to case, punctuation
    plant["exact_duplicate"] = {40}
    rows[5]["output"] = _answer(rng, 80)
    words = rows[5]["output"].split(" ")
    words[40] = "changed"
    rows.append(dict(rows[5], output=" ".join(words)))  # 41: one word of 80 changed (Jaccard ~0.93)
    plant["near_duplicate"] = {41}
    rows.append({"instruction": "Say something.", "input": "", "output": "nan"})  # 42
    plant["null_text"] = {42}
    rows.append({"instruction": "Give a long explanation of rivers.", "input": "", "output": "k"})  # 43
    plant["short_answer"] = {43, 42}  # "nan" is short too (under 4 characters with min_chars=4)
    rows.append({"instruction": "Repeat after me: the quick brown fox", "input": "",
                 "output": "Repeat after me: the quick brown fox"})  # 44
    plant["echo"] = {44}
    rows.append({"instruction": "请介绍一下长江和黄河的区别。", "input": "", "output": "长江比黄河长，水量也更大，流经的省份不同。"})  # 45
    plant["language"] = {45}
    rows.append({"instruction": "What is the capital of France? Please answer briefly.", "input": "",
                 "output": "法国的首都是巴黎，一个美丽的城市，有很多博物馆。"})  # 46: English question, Chinese answer
    plant["answer_language"] = {46}
    plant["mixed_language"] = {46}
    rows.append({"instruction": "Explain.", "input": "", "output": _answer(rng, 300)})  # 47: cut by cutoff_len=200
    plant["cut_answer"] = {47}
    rows.append({"conversations": [{"from": "human", "value": "hi"}, {"from": "human", "value": "hello?"},
                                   {"from": "gpt", "value": "Hello there, how can I help?"}]})  # 48 (sharegpt in alpaca)
    plant["invalid"] = {48}
    rows.append({"instruction": "Answer this.", "input": "", "output": "   "})  # 49: a white-space answer
    plant["empty_turn"] = {49}
    return rows, plant


def test_planted_problems_are_found_and_nothing_else(tmp_path, default_tokenizer_dir):
    from transformers import AutoTokenizer

    rows, plant = planted_rows()
    path = write_jsonl(tmp_path / "train.jsonl", rows)
    eval_rows = [dict(rows[7]), {"instruction": "Unrelated", "input": "", "output": _answer(random.Random(99))}]
    eval_path = write_jsonl(tmp_path / "eval.jsonl", eval_rows)
    tok = AutoTokenizer.from_pretrained(default_tokenizer_dir)
    report = doctor.examine(ds.open_dataset(path), ds.open_dataset(eval_path), tok, cutoff_len=200, min_answer_chars=4)
    flags = {k: set(v) for k, v in report["flags"].items()}
    for flag, expected in plant.items():
        assert flags[flag] == expected, (flag, flags[flag], expected)
    assert flags["in_eval"] == {7}
    assert [3, 40] in report["groups"]["exact"] and [5, 41] in report["groups"]["near"]
    assert flags["roles"] == set() and flags["empty_row"] == set()
    assert "line 49" in report["invalid_reasons"][48]
    assert report["language"]["majority"] == "en" and report["threshold"] == 0.8


def test_roles_empty_rows_and_preference_rows(tmp_path):
    rows = [{"messages": [{"role": "user", "content": "a?"}, {"role": "user", "content": "b?"},
                          {"role": "assistant", "content": "Here is the answer."}]},
            {"messages": [{"role": "user", "content": "fine?"}, {"role": "assistant", "content": "Yes, all fine."}]},
            {"messages": [{"role": "assistant", "content": "I start."}, {"role": "user", "content": "ok"},
                          {"role": "assistant", "content": "And end."}]}]
    path = write_jsonl(tmp_path / "m.jsonl", rows)
    (tmp_path / "e.jsonl").write_text('{"instruction": "", "input": "", "output": ""}\n{"instruction": "q", "output": "a"}\n')
    report = doctor.examine(ds.open_dataset(path))
    assert report["flags"]["roles"] == [0, 2]
    assert doctor.examine(ds.open_dataset(tmp_path / "e.jsonl"))["flags"]["empty_row"] == [0]
    pairs = write_jsonl(tmp_path / "p.jsonl", [{"prompt": "Pick one.", "chosen": "The first option, clearly.",
                                                 "rejected": "null"}] * 2)
    report = doctor.examine(ds.open_dataset(pairs))
    assert report["flags"]["null_text"] == [0, 1] and report["flags"]["exact_duplicate"] == [1]


def test_distinct_rows_are_not_near_duplicates(tmp_path):
    rng = random.Random(5)
    rows = [{"instruction": f"q{i}", "input": "", "output": _answer(rng)} for i in range(300)]
    report = doctor.examine(ds.open_dataset(write_jsonl(tmp_path / "d.jsonl", rows)))
    assert report["flags"]["near_duplicate"] == [] and report["flags"]["exact_duplicate"] == []
    with pytest.raises(DataError, match="threshold"):
        doctor.examine(ds.open_dataset(tmp_path / "d.jsonl"), threshold=1.5)


def test_one_click_fixes_are_ordinary_undoable_edits(tmp_path):
    rows, _ = planted_rows()
    path = write_jsonl(tmp_path / "train.jsonl", rows)
    ws = Workspace.create(str(path), root=tmp_path / "ws")
    report = doctor.examine(ws.view())
    drop = doctor.rows_to_drop(report, "duplicates")
    assert drop == [40, 41]
    version = ws.delete_rows(drop)
    assert len(ws.view()) == len(rows) - 2 and version.action == "delete"
    assert doctor.examine(ws.view())["counts"]["exact_duplicate"] == 0
    ws.undo()
    assert len(ws.view()) == len(rows) and path.read_text() == ws.data_path.read_text()  # nothing lost
    assert doctor.rows_to_drop(report, "empty") == [49]
    with pytest.raises(DataError, match="unknown fix"):
        doctor.rows_to_drop(report, "everything")


def test_cli_doctor_prints_json(tmp_path):
    rows, _ = planted_rows()
    path = write_jsonl(tmp_path / "train.jsonl", rows)
    res = subprocess.run([sys.executable, "-m", "studio", "data", "doctor", str(path), "--json"], capture_output=True,
                         text=True, cwd=ROOT, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    report = json.loads(res.stdout.strip().splitlines()[-1])
    assert report["flags"]["exact_duplicate"] == [40] and report["rows"] == len(rows)
    bad = subprocess.run([sys.executable, "-m", "studio", "data", "doctor", str(tmp_path / "nope.jsonl")],
                         capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert bad.returncode == 2 and "no such file" in bad.stderr
