"""Data studio tier: lazy open/page/search, stats, column mapping, rendering masks, edits with atomic saves, versions and
undo, mixes, bad input named precisely with nothing changed, and ``studio data inspect``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from tests.helpers import TEST_ROOTS, write_rows

from studio.engine.data import dataset_info
from studio.engine.data import formats as F
from studio.engine.data import view as ds
from studio.engine.data.load import load_dataset_spec
from studio.engine.data.mix import MixPart, plan_mix, preview_mix, save_mix
from studio.engine.data.formats import DataError
from studio.engine.data.workspace import Workspace

ROOT = Path(__file__).resolve().parents[2]
ASSETS = ROOT / "assets" / "data"

ROWS = {
    "alpaca": [{"instruction": f"Say {i}.", "input": "", "output": f"{i}."} for i in range(4)],
    "sharegpt": [{"conversations": [{"from": "human", "value": f"Q{i}"}, {"from": "gpt", "value": f"A{i}"}]} for i in range(4)],
    "messages": [{"messages": [{"role": "user", "content": f"Q{i}"}, {"role": "assistant", "content": f"A{i}"}]}
                 for i in range(4)],
    "pref_prompt": [{"prompt": f"Q{i}", "chosen": f"good {i}", "rejected": f"bad {i}"} for i in range(4)],
    "kto": [{"prompt": f"Q{i}", "completion": f"A{i}", "label": i % 2 == 0} for i in range(4)],
    "text": [{"text": f"Plain text number {i}."} for i in range(4)],
}
NEW = {"alpaca": {"instruction": "New?", "input": "", "output": "Yes."},
       "sharegpt": {"conversations": [{"from": "human", "value": "New?"}, {"from": "gpt", "value": "Yes."}]},
       "messages": {"messages": [{"role": "user", "content": "New?"}, {"role": "assistant", "content": "Yes."}]},
       "pref_prompt": {"prompt": "New?", "chosen": "Yes.", "rejected": "No."},
       "kto": {"prompt": "New?", "completion": "Yes.", "label": True},
       "text": {"text": "A new paragraph."}}
FLAT = ("alpaca", "pref_prompt", "text")  # CSV holds only flat text columns


def write(path: Path, rows: list[dict]) -> Path:
    return write_rows(path, rows)


def snapshot(folder: Path) -> dict:
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def tok(default_tokenizer_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(default_tokenizer_dir)


CASES = [(fmt, sfx) for fmt in ROWS for sfx in (".jsonl", ".json", ".parquet", ".csv") if sfx != ".csv" or fmt in FLAT]


@pytest.mark.parametrize("fmt, suffix", CASES)
def test_every_format_round_trips_through_edits(tmp_path, fmt, suffix):
    rows = ROWS[fmt]
    if suffix == ".csv":
        rows = [{k: str(v) for k, v in r.items()} for r in rows]
    src = write(tmp_path / f"src{suffix}", rows)
    original = src.read_bytes()
    ws = Workspace.create(src, root=tmp_path / "ws")
    view = ws.view()
    assert view.format == fmt and len(view) == 4 and view.rows() == rows
    assert sorted(ds.row_template(view.formats[0])) == sorted(rows[0])  # the editor's new-row template has the columns
    new = {k: str(v) for k, v in NEW[fmt].items()} if suffix == ".csv" else NEW[fmt]
    ws.update_row(1, new)
    ws.add_row(new, at=0)
    ws.duplicate_row(3)
    ws.delete_rows([4])
    expected = [new, rows[0], new, rows[2], rows[3]]
    again = Workspace(ws.root).view()
    assert again.rows() == expected and again.format == fmt
    assert [v.action for v in ws.history()] == ["import", "edit", "add", "duplicate", "delete"]
    assert src.read_bytes() == original  # the source is never written
    if fmt in ("alpaca", "sharegpt", "messages"):  # training reads the working copy exactly as the studio shows it
        assert [r["messages"] for r in load_dataset_spec(ws.spec).records] == \
               [ds.normalize(r, again.formats[0])["messages"] for r in expected]


def test_open_100k_rows_pages_and_searches(tmp_path):
    path = tmp_path / "big.jsonl"
    with open(path, "w", encoding="utf-8") as fh:
        for i in range(100_000):
            fh.write(json.dumps({"instruction": f"Question number {i}?", "input": "", "output": f"Answer {i}."}) + "\n")
    view = ds.open_dataset(path)  # how fast: benchmarks/startup_and_data.py
    page = ds.page(view, 4000, 25)
    assert len(view) == 100_000 and view.format == "alpaca"
    assert page["pages"] == 4000 and page["frame"]["#"].tolist() == list(range(99_975, 100_000))
    assert page["frame"]["output"].tolist()[-1] == "Answer 99999."
    found = ds.page(view, 1, 10, query="question NUMBER 4242?")
    assert found["total"] == 1 and found["indices"] == [4242]


def test_stats_counts_empty_duplicates_invalid_and_token_lengths(tmp_path, tok):
    rows = ROWS["alpaca"] + [ROWS["alpaca"][0], {"instruction": "", "input": "", "output": ""},
                             {"instruction": "x", "input": "", "output": ""},
                             {"instruction": "word " * 300, "input": "", "output": "ok"}]
    view = ds.open_dataset(write(tmp_path / "a.jsonl", rows))
    st = ds.stats(view, tok, cutoff_len=64)
    assert st["rows"] == 8 and st["duplicate_rows"] == 1 and st["duplicate_examples"] == [4]
    assert st["empty_rows"] == 1 and st["empty_examples"] == [5]
    assert st["invalid_rows"] == 1 and "line 7: missing or empty 'output'" in st["invalid_examples"][0]
    assert st["tokens"]["count"] == 6 and st["truncated_rows"] == 1 and st["tokens"]["max"] > 300
    assert sum(b["rows"] for b in st["histogram"]) == 6
    lengths = [len(tok.apply_chat_template(ds.normalize(r, view.formats[0])["messages"], tokenize=True)["input_ids"])
               for r in rows[:1]]
    assert st["tokens"]["min"] == lengths[0]


def test_stats_token_sample_scales_the_truncated_count(tmp_path, tok):
    rows = [{"instruction": "word " * (200 if i % 2 else 1), "input": "", "output": "ok"} for i in range(40)]
    view = ds.open_dataset(write(tmp_path / "a.jsonl", rows))
    full, sampled = ds.stats(view, tok, cutoff_len=100), ds.stats(view, tok, cutoff_len=100, token_sample=10)
    assert full["truncated_rows"] == 20 and "sampled" not in full["tokens"]
    assert sampled["tokens"]["sampled"] == 10 and sampled["tokens"]["count"] == 10
    assert sampled["truncated_rows"] == 0  # every 4th row is sampled: all short ones (even indices)
    odd = ds.stats(ds.open_dataset(write(tmp_path / "b.jsonl", rows[1:] + rows[:1])), tok, cutoff_len=100, token_sample=10)
    assert odd["truncated_rows"] == 40  # all sampled rows long: scaled to every valid row


def test_render_masks_exactly_the_assistant_tokens(tmp_path, tok):
    conv = {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
                         {"role": "assistant", "content": "Hello!"}, {"role": "user", "content": "Bye"},
                         {"role": "assistant", "content": "Goodbye."}]}
    view = ds.open_dataset(write(tmp_path / "m.jsonl", [conv]))
    out = ds.render_row(view, 0, tok)
    [v] = out["views"]
    assert "".join(t for t, on in v["segments"] if on) == "Hello!<|im_end|>\nGoodbye.<|im_end|>\n"
    assert "".join(t for t, _ in v["segments"]) == v["text"] and v["num_tokens"] > v["num_trained"] > 0
    pref = ds.open_dataset(write(tmp_path / "p.jsonl", ROWS["pref_prompt"]))
    chosen, rejected = ds.render_row(pref, 2, tok)["views"]
    assert (chosen["title"], rejected["title"]) == ("chosen", "rejected")
    assert "".join(t for t, on in chosen["segments"] if on) == "good 2<|im_end|>\n"
    assert "".join(t for t, on in rejected["segments"] if on) == "bad 2<|im_end|>\n"
    kto = ds.render_row(ds.open_dataset(write(tmp_path / "k.jsonl", ROWS["kto"])), 1, tok)["views"][0]
    assert kto["label"] is False and "".join(t for t, on in kto["segments"] if on) == "A1<|im_end|>\n"
    text = ds.render_row(ds.open_dataset(write(tmp_path / "t.jsonl", ROWS["text"])), 0, tok)["views"][0]
    assert text["num_trained"] == text["num_tokens"] and text["text"] == "Plain text number 0." + tok.eos_token


def test_dataset_info_folder_entries_and_import(tmp_path):
    view = ds.open_dataset(ASSETS)
    assert view.entries[:2] == ["demo_sft", "demo_multiturn"] and view.entry == "demo_sft" and view.format == "alpaca"
    multi = ds.open_dataset(f"{ASSETS}#demo_multiturn")
    assert multi.format == "sharegpt" and len(multi) == 4
    for name, fmt in (("demo_preference", "pref_alpaca"), ("demo_kto", "kto_alpaca")):  # every kind of entry opens
        if name in view.entries:
            entry = ds.open_dataset(f"{ASSETS}#{name}")
            assert entry.format == fmt and ds.normalize(entry.row(0), entry.formats[0])
    ws = Workspace.create(f"{ASSETS}#demo_multiturn", root=tmp_path)
    info = json.loads((ws.root / "dataset_info.json").read_text())
    assert info == {"demo_multiturn": dict(json.loads((ASSETS / "dataset_info.json").read_text())["demo_multiturn"],
                                           file_name="data.json")}
    assert load_dataset_spec(ws.spec).records == load_dataset_spec(f"{ASSETS}#demo_multiturn").records
    with pytest.raises(DataError, match="no entry 'nope'"):
        ds.open_dataset(f"{ASSETS}#nope")


ORCA = [{"system": "You are helpful.", "question": f"What is {i}+{i}?", "chatgpt": f"{2 * i}", "llama2-13b-chat": "no idea"}
        for i in range(3)]
ORCA_MAP = {"system": "system", "question": "prompt", "chatgpt": "chosen", "llama2-13b-chat": "rejected"}


def test_column_mapping_orca_pairs_is_saved_and_loads_for_training(tmp_path):
    src = write(tmp_path / "orca.parquet", ORCA)
    raw = ds.open_dataset(src)
    assert raw.format == "unknown" and "cannot tell the format" in raw.format_error and len(raw) == 3
    assert ds.page(raw, 1, 10)["frame"]["question"].tolist()[0] == "What is 0+0?"  # browsable before mapping
    ws = Workspace.create(src, root=tmp_path / "ws", mapping=ORCA_MAP)
    entry = json.loads((ws.root / "dataset_info.json").read_text())[ws.name]
    assert entry == {"file_name": "data.parquet", "formatting": "alpaca", "ranking": True,
                     "columns": {"system": "system", "prompt": "question", "chosen": "chatgpt", "rejected": "llama2-13b-chat"}}
    view = ws.view()
    assert view.format == "pref_alpaca"
    expected = {"prompt": [{"role": "system", "content": "You are helpful."}, {"role": "user", "content": "What is 1+1?"}],
                "chosen": [{"role": "assistant", "content": "2"}], "rejected": [{"role": "assistant", "content": "no idea"}]}
    assert ds.normalize(view.row(1), view.formats[0]) == expected
    [(path, fs)] = dataset_info.spec_from_dataset_info(ws.root / "dataset_info.json", kind="preference")  # the trainers' path
    assert path == ws.data_path and F.normalize_preference_row(ORCA[1], fs) == expected
    # mapping an existing workspace later, and bad mappings named
    ws2 = Workspace.create(src, name="later", root=tmp_path / "ws")
    assert ws2.view().format == "unknown"
    ws2.set_mapping(ORCA_MAP)
    assert ws2.view().format == "pref_alpaca"
    with pytest.raises(DataError, match="needs both a 'chosen' and a 'rejected'"):
        ws2.set_mapping({"question": "prompt", "chatgpt": "chosen"})
    with pytest.raises(DataError, match="role 'prompt' is given to two columns"):
        ws2.set_mapping({"question": "prompt", "system": "prompt"})
    with pytest.raises(DataError, match="column 'answer' is not in the data"):
        ws2.set_mapping({"question": "prompt", "answer": "response"})
    assert ws2.view().format == "pref_alpaca"  # refused mappings left the saved one alone


def test_find_replace_validation_and_undo(tmp_path, tok):
    rows = [{"instruction": "Who are you?", "input": "", "output": "I am {{NAME}}, made by {{AUTHOR}}."},
            {"instruction": "Name?", "input": "", "output": "{{NAME}}"}, ROWS["alpaca"][0]]
    ws = Workspace.create(write(tmp_path / "id.jsonl", rows), root=tmp_path / "ws")
    out = ws.replace_text("{{NAME}}", "Nova", tokenizer=tok)
    assert out["rows_changed"] == 2 and out["replacements"] == 2 and out["version"]["version"] == 2
    assert ws.view().row(0)["output"] == "I am Nova, made by {{AUTHOR}}."
    before = snapshot(ws.root)
    with pytest.raises(DataError, match=r"row 1: missing or empty 'output'.*nothing was saved"):
        ws.replace_text("Nova", "", column="output")  # would empty row 1's answer
    with pytest.raises(DataError, match=r"row 2: .*nothing was saved"):
        ws.update_row(2, {"instruction": "q", "input": "", "output": ["not", "text"]})
    assert snapshot(ws.root) == before
    ws.update_row(2, {"instruction": "q", "input": "", "output": "fine"})
    ws.undo()
    assert ws.view().row(2) == ROWS["alpaca"][0]
    ws.undo()
    assert ws.view().rows() == rows
    with pytest.raises(DataError, match="nothing to undo"):
        ws.undo()
    ws.restore(3)
    assert ws.view().row(2)["output"] == "fine"
    assert [(v.version, v.parent, v.action) for v in ws.history()] == \
           [(1, 0, "import"), (2, 1, "replace"), (3, 2, "edit"), (4, 1, "undo"), (5, 0, "undo"), (6, 5, "restore")]


def test_atomic_save_survives_a_crash_between_write_and_rename(tmp_path, monkeypatch):
    src = write(tmp_path / "a.jsonl", ROWS["alpaca"])
    original = src.read_bytes()
    ws = Workspace.create(src, root=tmp_path / "ws")
    before = snapshot(ws.root)

    def crash(a, b):
        raise OSError("power cut")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="power cut"):
        ws.update_row(0, NEW["alpaca"])
    with pytest.raises(OSError, match="power cut"):
        ws.replace_text("Say", "Tell")
    monkeypatch.undo()
    assert snapshot(ws.root) == before  # no temp file, no orphan snapshot, no history line
    assert src.read_bytes() == original
    assert Workspace(ws.root).view().rows() == ROWS["alpaca"]


@pytest.mark.parametrize("name, content, message", [
    ("bad.jsonl", b'{"instruction": "a", "output": "b"}\n\n{"instruction": "a", "output": \n', r"line 3: invalid JSON"),
    ("latin1.jsonl", '{"instruction": "a", "output": "b"}\n{"instruction": "café", "output": "x"}\n'.encode("latin-1"),
     r"line 2: not UTF-8"),
    ("empty.jsonl", b"", r"the file is empty"),
    ("blank.jsonl", b"\n  \n", r"the file has no rows"),
    ("binary.json", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x01", r"binary file"),
    ("list.jsonl", b'{"instruction": "a", "output": "b"}\n[1, 2]\n', r"line 2: expected a JSON object"),
    ("latin1.csv", "instruction,output\nok,fine\ncafé,x\n".encode("latin-1"), r"line 3: not UTF-8"),
    ("fake.parquet", b"this is not a parquet file at all", r"cannot read as PARQUET"),
    ("array.json", b'[{"instruction": "a", "output": "b"}, "oops"]', r"row 2: expected a JSON object"),
])
def test_bad_files_are_named_and_nothing_is_created(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(DataError, match=message) as exc:
        ds.open_dataset(path)
    assert str(path) in str(exc.value)
    with pytest.raises(DataError, match=message):
        Workspace.create(path, root=tmp_path / "ws")
    assert not (tmp_path / "ws").exists() or not any((tmp_path / "ws").iterdir())
    assert path.read_bytes() == content


def test_huge_row_and_missing_columns(tmp_path, monkeypatch):
    from studio.engine.data import rowfile as rowstore

    monkeypatch.setattr(rowstore, "MAX_ROW_BYTES", 1 << 16)  # same check, smaller file
    huge = write(tmp_path / "huge.jsonl", [ROWS["alpaca"][0], {"instruction": "x" * 70_000, "input": "", "output": "y"}])
    with pytest.raises(DataError, match=rf"{huge}: line 2: the row is over the 0.0625 MB limit"):
        ds.open_dataset(huge)
    as_json = write(tmp_path / "huge.json", [ROWS["alpaca"][0], {"instruction": "x" * 70_000, "input": "", "output": "y"}])
    with pytest.raises(DataError, match=rf"{as_json}: row 2: the row is"):
        ds.open_dataset(as_json)
    odd = write(tmp_path / "odd.csv", [{"q": "a", "a": "b"}])
    view = ds.open_dataset(odd)
    assert "cannot tell the format from the columns ['a', 'q']" in view.format_error
    ws = Workspace.create(odd, root=tmp_path / "ws")
    with pytest.raises(DataError, match="map the columns"):
        ws.add_row({"q": "c", "a": "d"})
    with pytest.raises(DataError, match=r"map a column to 'response'"):
        ws.set_mapping({"q": "prompt"})
    ws.set_mapping({"q": "prompt", "a": "response"})
    with pytest.raises(DataError, match=r"row 1: missing or empty 'a'"):
        ws.add_row({"q": "c"})
    assert ws.view().rows() == [{"q": "a", "a": "b"}]


def test_parquet_column_of_mixed_types_is_refused_and_nothing_changes(tmp_path):
    ws = Workspace.create(write(tmp_path / "k.parquet", ROWS["kto"]), root=tmp_path / "ws")
    before = snapshot(ws.root)
    with pytest.raises(DataError, match=r"data.parquet: cannot save as Parquet: .*keep each column one type"):
        ws.add_row({"prompt": "q", "completion": "a", "label": "yes"})  # a valid KTO label, but text in a bool column
    assert snapshot(ws.root) == before


def test_mix_with_caps_and_ratios(tmp_path):
    a = write(tmp_path / "a.jsonl", [{"instruction": f"a{i}", "input": "", "output": "x"} for i in range(50)])
    b = write(tmp_path / "b.json", [{"messages": [{"role": "user", "content": f"b{i}"}, {"role": "assistant", "content": "y"}]}
                                    for i in range(10)])
    plan = plan_mix([MixPart(str(a), cap=7), MixPart(str(b))], seed=1)
    assert [p["taken"] for p in plan["parts"]] == [7, 10] and plan["total"] == 17
    plan = plan_mix([MixPart(str(a), ratio=3), MixPart(str(b), ratio=1)], total=40, seed=1)
    assert [(p["wanted"], p["taken"], p["short_by"]) for p in plan["parts"]] == [(30, 30, 0), (10, 10, 0)]
    assert plan_mix([MixPart(str(a), ratio=3), MixPart(str(b), ratio=1)], total=80)["parts"][1]["short_by"] == 10
    frame = preview_mix(plan, rows=5)
    assert len(frame) == 5 and set(frame["dataset"]) <= {str(a), str(b)}
    ws = save_mix(plan, "mix", root=tmp_path / "ws")
    records = load_dataset_spec(ws.spec).records
    assert len(records) == 40 and sum(r["messages"][0]["content"].startswith("b") for r in records) == 10
    pref = write(tmp_path / "p.jsonl", ROWS["pref_prompt"])
    with pytest.raises(DataError, match="cannot mix preference and sft"):
        plan_mix([MixPart(str(a)), MixPart(str(pref))])


def studio_cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "studio", *map(str, args)], capture_output=True, text=True, cwd=ROOT,
                          timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})


def test_cli_inspect_json_and_bad_file_exit_code(tmp_path, default_tokenizer_dir):
    rows = ROWS["alpaca"] + [ROWS["alpaca"][0]]
    path = write(tmp_path / "a.jsonl", rows)
    res = studio_cli("data", "inspect", path, "--model", default_tokenizer_dir, "--cutoff-len", "40", "--rows", "2", "--json")
    assert res.returncode == 0, res.stderr[-2000:]
    report = json.loads(res.stdout)
    assert report["format"] == "alpaca" and report["rows"] == 5 and report["stats"]["duplicate_rows"] == 1
    tokens = report["stats"]["tokens"]
    assert tokens["count"] == 5 and report["stats"]["truncated_rows"] == (5 if tokens["min"] > 40 else 0)
    assert [e["index"] for e in report["examples"]] == [0, 1]
    [view] = report["examples"][1]["views"]
    assert view["num_tokens"] == min(40, tokens["min"]) and view["truncated"] == (tokens["min"] > 40)
    assert "".join(t for t, on in view["segments"] if on) == ("" if view["truncated"] else "1.<|im_end|>\n")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"instruction": "a", "output": "b"}\n{"instruction": \n', encoding="utf-8")
    res = studio_cli("data", "inspect", bad, "--model", "none", "--json")
    assert res.returncode == 2 and f"{bad}: line 2: invalid JSON" in res.stderr and "Traceback" not in res.stderr
    res = studio_cli("data", "inspect", ASSETS, "--dataset", "demo_multiturn", "--model", "none")
    assert res.returncode == 0 and "format sharegpt (entry demo_multiturn" in res.stdout


def test_cli_import_with_mapping_prints_a_training_spec(tmp_path, studio_home):
    src = write(tmp_path / "orca.jsonl", ORCA)
    maps = [a for col, role in ORCA_MAP.items() for a in ("--map", f"{col}={role}")]
    res = studio_cli("data", "import", src, "--name", "orca_cli", *maps)
    assert res.returncode == 0, res.stderr[-2000:]
    folder = Path(res.stdout.strip().splitlines()[-1])
    assert folder.parent == studio_home / "datasets" and "pref_alpaca, 3 rows" in res.stderr
    assert ds.open_dataset(folder).format == "pref_alpaca"
    res = studio_cli("data", "import", src, "--map", "question=nonsense")
    assert res.returncode == 2 and "unknown role 'nonsense'" in res.stderr


def test_data_tab_handlers_map_edit_undo_and_mix(tmp_path, default_tokenizer_dir):
    from studio.ui.panels import data_mix
    from studio.ui.tabs import data as data_tab
    from studio.ui.context import AppContext

    ctx = AppContext.create(runs_root=tmp_path / "runs", start_jobs=False, allow_paths=TEST_ROOTS)
    model = str(default_tokenizer_dir)
    folder = data_tab._on_open(ctx.access, str(ASSETS), 10, "", "en")
    assert folder[3]["choices"] and folder[3]["value"] == "demo_sft" and folder[3]["visible"] is True
    entry = data_tab._on_open(ctx.access, f"{ASSETS}#demo_multiturn", 10, "", "en", spec_out=True)
    assert "**sharegpt** format" in entry[0] and entry[-1] == f"{ASSETS}#demo_multiturn"
    assert json.loads(entry[-2]) == {"conversations": [{"from": "human", "value": ""}, {"from": "gpt", "value": ""}]}
    src = write(tmp_path / "orca.jsonl", ORCA)
    opened = data_tab._on_open(ctx.access, str(src), 10, "", "en")
    info, columns, roles = opened[0], opened[5], opened[6:6 + data_tab.N_MAP]
    assert "**unknown** format" in info and "map the columns" in info.lower()
    assert columns == list(ORCA[0]) and [r["label"] for r in roles[:4]] == list(ORCA[0])
    assert [r["value"] for r in roles[:4]] == ["system", "prompt", "", ""]  # guessed from the names; the user adds the rest
    assert opened[-1] == "{}"  # no format yet: no row template for the editor
    out = data_tab._on_apply_mapping(ctx.access, str(src), columns, *[ORCA_MAP.get(c, "") for c in columns],
                                     *[""] * (data_tab.N_MAP - len(columns)), 10, "en")
    spec = out[0]
    assert Path(spec).parent == ctx.uploads_root.parent / "datasets" and "**pref_alpaca** format" in out[1]
    html, stats = data_tab._on_render(ctx, spec, 1, model, 1024, "en")
    assert "<b>chosen</b>" in html and "<b>rejected</b>" in html and stats.count("trained on") == 2
    md, hist = data_tab._on_stats(ctx, spec, model, 1024, "en")
    assert md.startswith("3 rows · 0 empty · 0 duplicates · 0 invalid") and hist["rows"].sum() == 3
    before = Path(spec, "data.jsonl").read_bytes()
    edit = [spec, 0, json.dumps(dict(ORCA[0], chatgpt="")), model, 1024, 1, 10, "en"]
    refused = data_tab._on_edit(ctx, "update", *edit)
    assert "row 0: 'chatgpt' is empty; nothing was saved" in refused[1]
    assert Path(spec, "data.jsonl").read_bytes() == before  # refused: nothing written
    bad_json = data_tab._on_edit(ctx, "update", spec, 0, "{not json", model, 1024, 1, 10, "en")
    assert "not hold valid JSON" in bad_json[1]
    edit[2] = json.dumps(dict(ORCA[0], chatgpt="Zero."))
    saved = data_tab._on_edit(ctx, "update", *edit)
    assert "Saved version 2 (edit: row 0)" in saved[1] and saved[5]["version"].tolist() == [2, 1]
    replaced = data_tab._on_replace(ctx, spec, 0, "", model, 1024, 1, 10, "en", "no idea", "I do not know", "", False)
    assert "Replaced 3 times in 3 rows; saved version 3" in replaced[1]
    undone = data_tab._on_edit(ctx, "undo", *edit)
    assert "Saved version 4 (undo" in undone[1] and "I do not know" not in Path(spec, "data.jsonl").read_text()
    plain = write(tmp_path / "plain.jsonl", ROWS["alpaca"])
    copy = data_tab._on_edit(ctx, "duplicate", str(plain), 1, "", model, 1024, 1, 10, "en")
    assert "Working copy" in copy[1] and len(ds.open_dataset(copy[0])) == 5 and plain.read_text().count("\n") == 4
    table = pd.DataFrame([[copy[0], 3, 0.0], [str(tmp_path / "plain.jsonl"), 0, 0.0], ["", 0, 0.0]],
                         columns=data_mix.COLUMNS)
    msg, frame = data_mix.on_preview(ctx.access, table, 0, 0, "en")
    assert "7 rows of sft data" in msg and len(frame) == 7
    msg, _ = data_mix.on_save(ctx.access, table, 0, 0, "en", "ui_mix")
    assert "Mix saved as" in msg and len(load_dataset_spec(msg.split("`")[-2]).records) == 7


def test_plain_text_mapping_is_kept_out_of_sft_training(tmp_path):
    src = write(tmp_path / "corpus.jsonl", [{"body": "Once upon a time.", "id": "1"}, {"body": "The end.", "id": "2"}])
    ws = Workspace.create(src, root=tmp_path / "ws", mapping={"body": "text"})
    view = ws.view()
    assert view.format == "text" and ds.normalize(view.row(1), view.formats[0]) == {"text": "The end."}
    with pytest.raises(DataError, match="is text data: plain text for continued pre-training, not for sft"):
        load_dataset_spec(f"{ws.spec}#{ws.name}")
    ws.add_row({"body": "More.", "id": "3"})
    with pytest.raises(DataError, match="'body' is only whitespace"):
        ws.add_row({"body": "   ", "id": "4"})
    assert len(ws.view()) == 3


def test_concurrent_edits_do_not_lose_rows(tmp_path):
    import threading

    ws = Workspace.create(write(tmp_path / "a.jsonl", ROWS["alpaca"]), root=tmp_path / "ws")

    def add(tag):
        for k in range(5):
            Workspace(ws.root).add_row({"instruction": f"{tag}{k}", "input": "", "output": "ok"})

    threads = [threading.Thread(target=add, args=(tag,)) for tag in "ab"]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    rows = ws.view().rows()
    assert len(rows) == 14 and {r["instruction"] for r in rows[4:]} == {f"{t}{k}" for t in "ab" for k in range(5)}
    assert [v.version for v in ws.history()] == list(range(1, 12))


def test_cli_mix_with_caps_and_ratios(tmp_path):
    a = write(tmp_path / "a.jsonl", [{"instruction": f"a{i}", "input": "", "output": "x"} for i in range(30)])
    res = studio_cli("data", "mix", f"{a}@5", f"{ASSETS}#demo_multiturn", "--name", "cli_mix")
    assert res.returncode == 0, res.stderr[-2000:]
    assert "5 of 30 rows" in res.stderr and "9 rows of sft data" in res.stderr
    assert len(load_dataset_spec(res.stdout.strip().splitlines()[-1]).records) == 9
    res = studio_cli("data", "mix", a, f"{ASSETS}#demo_multiturn", "--ratios", "1,1", "--total", "10", "--preview")
    assert res.returncode == 0 and "5 of 30 rows" in res.stderr and "4 of 4 rows (1 short)" in res.stderr
    res = studio_cli("data", "mix", a, f"{ASSETS}#demo_preference")
    assert res.returncode == 2 and "cannot mix preference and sft" in res.stderr
