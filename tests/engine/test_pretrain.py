"""Continued pre-training from text (``method.stage: pt``) and LLaMA-Factory's own data folder.

- ``.txt`` files (one document per line, or per blank-line block: a dataset_info.json entry's ``text_split``),
  ``{"text": ...}`` rows and LLaMA-Factory ``"columns": {"prompt": "text"}`` entries load in the Data tab's engine;
- every local entry of a folder laid out like LLaMA-Factory's ``data/`` (``tests/lf_folder.py``) opens, normalises and
  loads for the kind of training it feeds;
- packing: documents end to end with EOS between them, blocks of ``cutoff_len``, every token trained;
- a pt run trains on the tiny model and writes its report.
"""

from __future__ import annotations

import json

import pytest

from studio import config as C
from studio.engine import rundir
from studio.engine.data import view as ds
from studio.engine.data.formats import DataError, text_documents
from studio.engine.data.load import load_dataset_spec, pack_documents, prepare_pt_data
from studio.engine.data.workspace import Workspace
from studio.engine.train.runner import run
from tests.lf_folder import KINDS, WIKI, write_lf_folder


def test_every_local_entry_of_a_llama_factory_data_folder_loads(tmp_path, default_tokenizer_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(default_tokenizer_dir)
    folder = write_lf_folder(tmp_path / "data")
    view = ds.open_dataset(folder)
    assert set(view.entries) == set(KINDS)  # the hub-only entry is not offered
    for name, kind in KINDS.items():
        view = ds.open_dataset(f"{folder}#{name}")
        assert not view.format_error, (name, view.format_error)
        for i in range(len(view)):
            ds.render_row(view, i, tok)  # normalised and rendered as training sees it
        loaded = load_dataset_spec(f"{folder}#{name}", kind=kind)
        assert len(loaded.records) >= len(view) > 0, name
    assert ds.open_dataset(f"{folder}#wiki_demo").format == "text"
    assert [r["text"] for r in ds.open_dataset(f"{folder}#wiki_demo").rows()] == WIKI


def test_text_files_split_by_line_or_by_blank_line_block(tmp_path):
    path = tmp_path / "book.txt"
    path.write_text("First line of one.\nSecond line of one.\n\n\nSecond document.   \n", encoding="utf-8")
    assert text_documents(path, "line") == ["First line of one.", "Second line of one.", "Second document."]
    assert text_documents(path, "blank_line") == ["First line of one.\nSecond line of one.", "Second document."]
    with pytest.raises(DataError, match="text_split"):
        text_documents(path, "paragraph")
    (tmp_path / "dataset_info.json").write_text(json.dumps({"book": {"file_name": "book.txt", "text_split": "blank_line"}}))
    view = ds.open_dataset(f"{tmp_path}#book")
    assert len(view) == 2 and view.row(0)["text"].count("\n") == 1
    assert len(load_dataset_spec(f"{tmp_path}#book", kind="text").records) == 2
    assert len(ds.open_dataset(path)) == 3  # a bare .txt: one document per line
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "book.txt").write_text("x\n")
    (bad / "dataset_info.json").write_text(json.dumps({"b": {"file_name": "book.txt", "text_split": "pages"}}))
    with pytest.raises(DataError, match="entry 'b'.*text_split 'pages'"):
        ds.open_dataset(f"{bad}#b")


def test_sft_refuses_plain_text_and_says_what_it_is_for(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("just text\n", encoding="utf-8")
    with pytest.raises(DataError, match="plain-text rows"):
        load_dataset_spec(str(path), kind="sft")


def test_text_workspace_edits_keep_the_txt_file_type(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text("alpha beta\ngamma delta\n", encoding="utf-8")
    ws = Workspace.create(str(path), root=tmp_path / "ws")
    ws.add_row({"text": "epsilon zeta"})
    assert ws.data_path.read_text(encoding="utf-8") == "alpha beta\ngamma delta\nepsilon zeta\n"
    with pytest.raises(DataError, match="line break"):
        ws.add_row({"text": "two\nlines"})
    assert len(ws.view()) == 3


def test_packing_puts_eos_between_documents_and_cuts_blocks(default_tokenizer_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(default_tokenizer_dir)
    docs = ["one two three", "four five", "six"]
    blocks, total = pack_documents(tok, docs, cutoff_len=4)
    stream = [t for b in blocks for t in b["input_ids"]]
    expected = [t for d in docs for t in tok(d, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]]
    assert stream == expected and total == len(expected)
    assert all(len(b["input_ids"]) == 4 for b in blocks[:-1]) and 0 < len(blocks[-1]["input_ids"]) <= 4
    assert all(b["labels"] == b["input_ids"] for b in blocks)  # every token trained
    assert stream.count(tok.eos_token_id) == 3


def test_pt_eval_split_takes_whole_documents(default_tokenizer_dir, tmp_path):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(default_tokenizer_dir)
    path = tmp_path / "docs.jsonl"
    path.write_text("".join(json.dumps({"text": f"document number {i} " * 5}) + "\n" for i in range(10)))
    cfg = C.apply_overrides(C.RunConfig(), {"data.datasets": [str(path)], "data.val_size": 2})
    data = prepare_pt_data(cfg.data, tok, cutoff_len=16, seed=1)
    assert data.report["documents"] == 10 and data.report["eval_documents"] == 2 and data.report["packed"]
    eval_ids = [t for b in data.eval for t in b["input_ids"]]
    assert eval_ids.count(tok.eos_token_id) == 2
    assert data.report["train_tokens"] == sum(len(b["input_ids"]) for b in data.train) == data.report["trained_tokens"]


def test_pt_run_trains_on_packed_text(tiny_model_dir, tmp_path):
    folder = write_lf_folder(tmp_path / "data")
    cfg = C.check(C.apply_overrides(C.RunConfig(), {
        "model.name_or_path": str(tiny_model_dir), "method.stage": "pt", "data.datasets": [f"{folder}#wiki_demo",
                                                                                           f"{folder}#c4_demo"],
        "training.max_steps": 2, "training.per_device_train_batch_size": 2, "training.cutoff_len": 16,
        "training.learning_rate": 5e-3, "training.logging_steps": 1}))
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    assert run(cfg, run_dir) == 0, rundir.tail_log(run_dir)
    report = json.loads((run_dir / rundir.DATA_REPORT).read_text())
    assert report["documents"] == 6 and report["packed"] and report["train_rows"] >= 2
    losses = [m["loss"] for m in rundir.read_metrics(run_dir) if m.get("kind") == "train"]
    assert len(losses) == 2 and all(x > 0 for x in losses)
    assert (run_dir / "adapter" / "adapter_model.safetensors").is_file()


def test_pt_config_refuses_identity_and_sft_data(alpaca_file):
    cfg = C.apply_overrides(C.RunConfig(), {"method.stage": "pt", "identity.name_en": "Nova"})
    assert any("stage pt" in e for e in C.validate(cfg))
    with pytest.raises(DataError, match="not text"):
        load_dataset_spec(str(alpaca_file), kind="text")
