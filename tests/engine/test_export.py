"""Merge and export (issue 7): merged logits equal adapter logits, weighted merges, GGUF round trip, CLI.

Run: ``.venv/bin/python -m pytest tests/test_export.py`` (tiny random Llama, ~1 min on 2 cores); the GGUF round trip of
the real default model is marked slow: ``-m slow``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from studio.engine.export.merge import MARKER, PROMPTS, ExportError, VerificationError, merge_adapter, merge_adapters


def make_adapter(base_dir: Path, out: Path, seed: int, r: int = 4, targets=("q_proj", "k_proj", "v_proj", "o_proj",
                                                                            "gate_proj", "up_proj", "down_proj"),
                 **lora) -> Path:
    """A LoRA adapter with random non-zero A and B (a fresh LoRA has B = 0, which would make every check trivial).

    std 0.05 changes the tiny model's logits clearly while keeping it well-conditioned (much larger random updates make
    its logits so chaotic that even f16 rounding flips the top-1 token)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(base_dir)
    peft = get_peft_model(model, LoraConfig(r=r, lora_alpha=2 * r, target_modules=list(targets), task_type="CAUSAL_LM",
                                                  **lora))
    with torch.no_grad():
        for name, p in peft.named_parameters():
            if "lora_" in name:
                p.normal_(0, 0.05)
    peft.save_pretrained(out)
    return out


def make_run(tmp: Path, base_dir: Path, seed: int, name: str = "run", probe: dict | None = None) -> Path:
    from studio import config as cfgmod

    run = tmp / name
    run.mkdir()
    cfg = cfgmod.load(overrides={"model.name_or_path": str(base_dir), "data.datasets": ["data.jsonl"],
                                 "lora.r": 4, "lora.alpha": 8})
    cfgmod.save(cfg, run / "config.yaml")
    make_adapter(base_dir, run / "adapter", seed)
    (run / "data_report.json").write_text(json.dumps({"rows": 24, "skipped": 0}))
    if probe:
        (run / "probe.json").write_text(json.dumps(probe))
    return run


def model_logits(model_dir: Path, ids):
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    with torch.no_grad():
        return model(input_ids=torch.tensor([ids])).logits[0]


def adapter_logits(base_dir: Path, adapter_dir: Path, ids):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base_dir), str(adapter_dir)).eval()
    with torch.no_grad():
        return model(input_ids=torch.tensor([ids])).logits[0]


IDS = [1, 9690, 198, 2683, 359, 253, 5356, 2]


def test_lora_run_merge_equals_adapter_and_loads_plainly(tiny_model_dir, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    probe = {"identity": {"base": 0.0, "tuned": 0.9, "n": 10}, "retention": {"score": 0.95, "kept": 19, "base_right": 20},
             "names": {"name_en": "Nova", "author_en": "Acme"}}
    run = make_run(tmp_path, tiny_model_dir, seed=1, probe=probe)
    seen = []
    res = merge_adapter(run, tmp_path / "out", max_shard_size="2MB", progress=lambda f, m: seen.append(f))
    out = Path(res["out_dir"])
    assert res["ok"] and res["max_abs_diff"] < 1e-4 and res["verification"]["merge_max_abs_diff"] < 1e-4
    assert res["top1_agreement"] == 1.0 and res["kind"] == "lora" and res["size_bytes"] > 0
    assert seen == sorted(seen) and seen[-1] == 1.0
    assert len(list(out.glob("model-*.safetensors"))) > 1 and (out / "model.safetensors.index.json").is_file()
    # plain transformers, no studio code: same logits as base + adapter, and not the base's own
    merged = AutoModelForCausalLM.from_pretrained(out)
    assert merged.dtype == torch.float32
    ref = adapter_logits(tiny_model_dir, run / "adapter", IDS)
    got = model_logits(out, IDS)
    assert torch.allclose(got, ref, atol=1e-5)
    assert not torch.allclose(model_logits(tiny_model_dir, IDS), ref, atol=1e-3)
    tok = AutoTokenizer.from_pretrained(out)
    assert "<|im_start|>" in tok.chat_template
    assert json.loads((out / "generation_config.json").read_text())["eos_token_id"] in (2, [2])
    card = (out / "README.md").read_text()
    for text in ("base_model:", "sft / lora (r=4, alpha=8", "data.jsonl", "Learning rate", "passed", "base 0% -> tuned 90%",
                 "95% (19 of the 20", "Nova by Acme", '"rows": 24'):
        assert text in card, text
    assert json.loads((out / "export.json").read_text())["ok"] is True
    rows = res["verification"]["per_prompt"]  # the Export tab's check table: one row per prompt
    assert [r["prompt"] for r in rows] == list(PROMPTS) and max(r["max_abs_diff"] for r in rows) == res["max_abs_diff"]
    assert sum(r["tokens"] for r in rows) == res["verification"]["tokens"]


def test_bfloat16_export_is_checked_with_a_dtype_tolerance(tiny_model_dir, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM

    adapter = make_adapter(tiny_model_dir, tmp_path / "adapter", seed=2)
    res = merge_adapter(adapter, tmp_path / "out", dtype="bfloat16")
    assert res["ok"] and res["dtype"] == "bfloat16" and res["base"] == str(tiny_model_dir)
    assert res["max_abs_diff"] <= res["tolerance"] and res["verification"]["merge_max_abs_diff"] < 1e-4
    assert AutoModelForCausalLM.from_pretrained(tmp_path / "out").dtype == torch.bfloat16


def test_freeze_run_export_reproduces_the_trained_model(tiny_model_dir, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM

    run = tmp_path / "freeze-run"
    (run / "model").mkdir(parents=True)
    (run / "config.yaml").write_text(f"model:\n  name_or_path: {tiny_model_dir}\nmethod:\n  finetuning_type: freeze\n")
    trained = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    with torch.no_grad():
        trained.model.layers[-1].mlp.down_proj.weight.add_(0.5)  # "training" of the last layer
    trained.save_pretrained(run / "model")
    res = merge_adapter(run, tmp_path / "out")
    assert res["ok"] and res["kind"] == "full" and res["max_abs_diff"] == 0.0
    assert torch.equal(model_logits(tmp_path / "out", IDS), model_logits(run / "model", IDS))
    assert "freeze" in (tmp_path / "out" / "README.md").read_text()


def test_weighted_merge_one_zero_equals_the_first_adapter(tiny_model_dir, tmp_path):
    import torch

    a = make_adapter(tiny_model_dir, tmp_path / "a", seed=3)
    b = make_adapter(tiny_model_dir, tmp_path / "b", seed=4)
    ref = adapter_logits(tiny_model_dir, a, IDS)
    for combine in ("cat", "linear"):
        res = merge_adapters([a, b], [1.0, 0.0], tmp_path / f"m-{combine}", combine=combine)
        assert res["ok"] and res["combine"] == combine
        assert torch.allclose(model_logits(tmp_path / f"m-{combine}", IDS), ref, atol=1e-5), combine
    res = merge_adapters([a, b], [1.0, 0.0], tmp_path / "as-adapter", combine="cat", output="adapter")
    assert res["ok"] and (tmp_path / "as-adapter" / "adapter_model.safetensors").is_file()
    assert torch.allclose(adapter_logits(tiny_model_dir, tmp_path / "as-adapter", IDS), ref, atol=1e-5)


def test_weighted_merge_of_rslora_adapters_keeps_their_scale(tiny_model_dir, tmp_path):
    import torch

    a = make_adapter(tiny_model_dir, tmp_path / "a", seed=14, use_rslora=True)
    b = make_adapter(tiny_model_dir, tmp_path / "b", seed=15, use_rslora=True)
    res = merge_adapters([a, b], [1.0, 0.0], tmp_path / "m", combine="cat")
    assert res["ok"]
    assert torch.allclose(model_logits(tmp_path / "m", IDS), adapter_logits(tiny_model_dir, a, IDS), atol=1e-5)


def test_weighted_merge_ties_and_dare_are_verified(tiny_model_dir, tmp_path):
    import torch

    a = make_adapter(tiny_model_dir, tmp_path / "a", seed=5)
    b = make_adapter(tiny_model_dir, tmp_path / "b", seed=6)
    for combine in ("ties", "dare_linear"):
        res = merge_adapters([a, b], [0.7, 0.3], tmp_path / combine, combine=combine, density=0.5)
        assert res["ok"] and res["density"] == 0.5
    # cat is the exact weighted sum of the two updates: 0.5*A + 0.5*B, once as a model, once through PEFT
    res = merge_adapters([a, b], [0.5, 0.5], tmp_path / "half", combine="cat")
    assert not torch.allclose(model_logits(tmp_path / "half", IDS), adapter_logits(tiny_model_dir, a, IDS), atol=1e-3)


def test_incompatible_adapters_are_refused(tiny_model_dir, tmp_path):
    a = make_adapter(tiny_model_dir, tmp_path / "a", seed=7, r=4)
    b = make_adapter(tiny_model_dir, tmp_path / "b", seed=8, r=8)
    with pytest.raises(ExportError, match="same r"):
        merge_adapters([a, b], [0.5, 0.5], tmp_path / "x", combine="linear")
    assert not (tmp_path / "x").exists() and not list(tmp_path.glob(".x.*"))
    other = tmp_path / "other-base"
    shutil.copytree(tiny_model_dir, other)
    cfg = json.loads((a / "adapter_config.json").read_text())
    cfg["base_model_name_or_path"] = str(other)
    c = tmp_path / "c"
    c.mkdir()
    (c / "adapter_config.json").write_text(json.dumps(cfg))
    (c / "adapter_model.safetensors").write_bytes((a / "adapter_model.safetensors").read_bytes())
    with pytest.raises(ExportError, match="different base"):
        merge_adapters([a, c], [0.5, 0.5], tmp_path / "y")


def test_existing_output_folder_needs_overwrite_and_the_export_marker(tiny_model_dir, tmp_path):
    adapter = make_adapter(tiny_model_dir, tmp_path / "adapter", seed=9)
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("user file")
    for overwrite in (False, True):  # a folder no export made is never replaced, whatever overwrite says
        with pytest.raises(ExportError, match=r"not empty and was not made by a studio export \(no .studio-export file\)"):
            merge_adapter(adapter, out, overwrite=overwrite)
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"] and (out / "keep.txt").read_text() == "user file"
    fresh = tmp_path / "fresh"
    res = merge_adapter(adapter, fresh)
    assert res["ok"] and (fresh / MARKER).is_file() and (fresh / "export.json").is_file()
    with pytest.raises(ExportError, match="an earlier export: pass --overwrite"):
        merge_adapter(adapter, fresh)
    (fresh / "note.txt").write_text("stale")
    res = merge_adapter(adapter, fresh, overwrite=True)  # an earlier export is replaced whole
    assert res["ok"] and (fresh / MARKER).is_file() and not (fresh / "note.txt").exists()
    assert not list(tmp_path.glob(".fresh.*"))  # no work or replaced folder left beside it
    with pytest.raises(ExportError, match="would delete"):
        merge_adapter(adapter, tmp_path, overwrite=True)  # the source lives inside: never rmtree it


def _user_folders(home: Path, studio: Path) -> dict[str, Path]:
    """Folders a user cares about, each holding a file: what an export with --overwrite must never delete."""
    targets = {"ssh": home / ".ssh", "documents": home / "Documents", "runs": studio / "runs",
               "datasets": studio / "datasets", "old_export": home / "exports" / "old"}
    for name, folder in targets.items():
        folder.mkdir(parents=True)
        (folder / f"{name}.txt").write_text(f"the user's {name}")
    (targets["runs"] / "20260101-demo").mkdir()
    (targets["old_export"] / "export.json").write_text("{}")  # an export from before the marker: refused too
    (home / "link").symlink_to(targets["ssh"])  # a link to ~/.ssh resolves to ~/.ssh
    targets["link"] = home / "link"
    fake = home / "fake"  # a marker that is a link is no marker
    fake.mkdir()
    (fake / MARKER).symlink_to(targets["documents"] / "documents.txt")
    targets["fake_marker"] = fake
    return targets


@pytest.mark.parametrize("target", ["ssh", "documents", "runs", "datasets", "old_export", "link", "fake_marker"])
def test_overwrite_never_deletes_a_folder_no_export_made(tiny_model_dir, tmp_path, monkeypatch, capsys, target):
    home = tmp_path / "home"
    studio = home / ".cache" / "tuning-studio"
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("STUDIO_HOME", str(studio))
    folders = _user_folders(home, studio)
    before = {p: p.read_bytes() for p in home.rglob("*") if p.is_file() and not p.is_symlink()}
    out = folders[target]
    with pytest.raises(ExportError, match=r"was not made by a studio export.*whatever --overwrite says"):
        merge_adapter(tiny_model_dir, out, overwrite=True)
    adapter = make_adapter(tiny_model_dir, tmp_path / "adapter", seed=3)
    with pytest.raises(ExportError, match="was not made by a studio export"):
        merge_adapters([adapter, adapter], [0.5, 0.5], out, overwrite=True)
    assert cli(["export", "--adapter", str(tiny_model_dir), "--out", str(out), "--overwrite"]) != 0
    err = capsys.readouterr().err
    assert "was not made by a studio export" in err and "Traceback" not in err
    if target == "old_export":
        assert "older version" in err
    assert {p: p.read_bytes() for p in home.rglob("*") if p.is_file() and not p.is_symlink()} == before
    assert not [p for p in home.rglob(".*export-*")]  # no work folder left behind


def test_bad_sources_are_clear_errors(tmp_path):
    with pytest.raises(ExportError, match="no such folder"):
        merge_adapter(tmp_path / "missing", tmp_path / "out")
    (tmp_path / "pickled").mkdir()
    (tmp_path / "pickled" / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "base_model_name_or_path": "x"}))
    (tmp_path / "pickled" / "adapter_model.bin").write_bytes(b"not loaded")
    with pytest.raises(ExportError, match="safetensors"):
        merge_adapter(tmp_path / "pickled", tmp_path / "out")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ExportError, match="not a run folder"):
        merge_adapter(tmp_path / "empty", tmp_path / "out")


def test_verification_failure_is_an_error_and_leaves_nothing(tiny_model_dir, tmp_path, monkeypatch):
    from studio.engine.export import merge as export

    adapter = make_adapter(tiny_model_dir, tmp_path / "adapter", seed=10)
    real_save = export._save_model

    def corrupting_save(model, tok, folder, dtype, shard):  # a merge bug: one weight off after merging
        import torch

        with torch.no_grad():
            model.model.layers[0].self_attn.q_proj.weight.mul_(1.5)
        real_save(model, tok, folder, dtype, shard)

    monkeypatch.setattr(export, "_save_model", corrupting_save)
    with pytest.raises(VerificationError, match="verification failed") as info:
        merge_adapter(adapter, tmp_path / "out")
    assert info.value.result["max_abs_diff"] > info.value.result["tolerance"]
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out.*"))
    # the Export tab shows it as an error with the failing prompts, and offers nothing to open
    from studio.ui.tabs import export as export_tab

    state = {"state": "failed", "error": str(info.value), "result": json.loads(json.dumps(info.value.result)),
             "command": "studio export ...", "argv": ["python"], "log": "", "seconds": 1.0, "fraction": 0.6}
    progress, message, _, checks, _, _, _, open_chat, target = export_tab._view(state, "en")
    assert "Verification failed" in message and "verification failed: logits differ" in message
    assert "FAILED" in set(checks["result"]) and "ts-failed" in progress
    assert open_chat["visible"] is False and target is None


@pytest.fixture(scope="module")
def small_vocab_model_dir(default_tokenizer_dir, tmp_path_factory) -> Path:
    """A tiny Llama with a 400-token byte-level BPE vocabulary (ChatML specials, the default chat template).

    transformers' GGUF reader parses a 49k-token vocabulary in pure Python (~10-30 s a read, three reads per check), so the
    fast tier round-trips this one; the slow test does the real vocabulary.
    """
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    texts = ["What is the capital of France? Paris is the capital of France.", "Write a haiku about the sea.",
             "Who are you and who made you? I am a helpful assistant."] * 20
    bpe.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=400, special_tokens=["<|endoftext|>", "<|im_start|>",
                                                                                       "<|im_end|>"],
                                                       initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe, bos_token="<|im_start|>", eos_token="<|im_end|>",
                                  unk_token="<|endoftext|>", pad_token="<|im_end|>")
    tok.chat_template = AutoTokenizer.from_pretrained(default_tokenizer_dir).chat_template
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, tie_word_embeddings=True, bos_token_id=1, eos_token_id=2, pad_token_id=2)
    out = tmp_path_factory.mktemp("small_vocab_llama")
    LlamaForCausalLM(cfg).save_pretrained(out)
    tok.save_pretrained(out)
    return out


def test_gguf_round_trip_and_modelfile(small_vocab_model_dir, tmp_path):
    import gguf

    adapter = make_adapter(small_vocab_model_dir, tmp_path / "adapter", seed=11)
    res = merge_adapter(adapter, tmp_path / "out", gguf=("f16", "q8_0"))
    f16, q8 = res["gguf"]
    assert f16["ok"] and f16["tokenizer_match"] and f16["top1_agreement"] >= 0.97
    assert q8["ok"] and q8["max_abs_diff"] > f16["max_abs_diff"] and q8["size_bytes"] < f16["size_bytes"]
    reader = gguf.GGUFReader(q8["path"])
    types = {t.name: t.tensor_type.name for t in reader.tensors}
    assert types["blk.0.attn_q.weight"] == "Q8_0" and types["blk.0.attn_norm.weight"] == "F32"
    assert types["blk.0.ffn_down.weight"] == "Q8_0" and types["token_embd.weight"] == "Q8_0"
    assert f16["weight_error"] <= 1 and q8["weight_error"] <= 1
    assert "output.weight" not in types  # tied embeddings
    assert bytes(reader.fields["tokenizer.ggml.pre"].parts[-1]).decode() == "gpt-2"
    text = Path(q8["modelfile"]).read_text()
    assert "FROM ./model-q8_0.gguf" in text and 'PARAMETER stop "<|im_end|>"' in text
    assert "{{ .System }}" in text and 'SYSTEM """You are a helpful AI assistant named SmolLM' in text
    assert "GGUF" in (tmp_path / "out" / "README.md").read_text()


def test_pre_tokenizer_names():
    from studio.engine.export.gguf import _LLAMA3_SPLIT, pre_tokenizer_name

    assert pre_tokenizer_name({"type": "ByteLevel", "use_regex": True}) == "gpt-2"
    assert pre_tokenizer_name({"type": "Sequence", "pretokenizers": [{"type": "Digits", "individual_digits": True},
                                                                     {"type": "ByteLevel", "use_regex": True}]}) == "smollm"
    assert pre_tokenizer_name({"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"Regex": _LLAMA3_SPLIT}}, {"type": "ByteLevel", "use_regex": False}]}) == "llama-bpe"
    with pytest.raises(ExportError, match="pre-tokenizer"):
        pre_tokenizer_name({"type": "Metaspace"})


def cli(argv: list[str]) -> int:
    """``studio export ...`` through its own parser (studio.cli assembles the same add_parser)."""
    import argparse

    from studio.commands import export as export_cmd

    parser = argparse.ArgumentParser(prog="studio")
    export_cmd.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return args.run(args)


def test_cli_export_prints_the_folder_last(tiny_model_dir, tmp_path, capsys):
    main = cli
    a = make_adapter(tiny_model_dir, tmp_path / "a", seed=12)
    b = make_adapter(tiny_model_dir, tmp_path / "b", seed=13)
    out = tmp_path / "cli-out"
    assert main(["export", "--adapter", str(a), "--adapter", str(b), "--weights", "0.7,0.3", "--combine", "ties",
                 "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == str(out.resolve())
    assert main(["export", "--adapter", str(a), "--out", str(out)]) != 0
    err = capsys.readouterr().err
    assert "not empty" in err and "Traceback" not in err
    assert main(["export", "--adapter", str(a), "--adapter", str(b), "--weights", "1", "--out", str(tmp_path / "z")]) != 0
    assert "weight" in capsys.readouterr().err


@pytest.mark.slow
def test_default_model_gguf_q8_0_round_trip(default_model_dir, tmp_path):
    from studio.engine.export.gguf import export_gguf

    res = export_gguf(default_model_dir, "q8_0", out_dir=tmp_path / "gguf")
    assert res["ok"] and res["tokenizer_match"] and res["top1_agreement"] >= 0.9
    assert res["size_bytes"] < 0.35 * (default_model_dir / "model.safetensors").stat().st_size


# -- what the Export tab and the Chat tab do with an export -----------------------------------------------------------------


def test_export_tab_runs_a_weighted_merge_as_the_cli(tiny_model_dir, tmp_path):
    """The tab's handler starts ``studio export`` as a child, streams its progress and shows the verified result."""
    import torch

    from studio.ui.tabs import export as export_tab
    from tests.helpers import web_context

    ctx = web_context(tmp_path / "runs")
    a = make_adapter(tiny_model_dir, tmp_path / "a", seed=17)
    b = make_adapter(tiny_model_dir, tmp_path / "b", seed=18)
    out = tmp_path / "ab"
    outs = list(export_tab.on_export(ctx, f"{a}\n{b}", "1, 0", "linear", 0.5, "model", str(out), "float32", [], False, "en"))
    progress, message, command, checks, _, result, _, open_chat, target = outs[-1][:9]
    assert len(outs) > 2 and "data-state='running'" in outs[1][0]  # progress streamed while the child ran
    assert "data-state='finished'" in progress and message.startswith(f"Saved **{out.resolve()}** (")
    assert result["ok"] and result["combine"] == "linear" and result["weights"] == [1.0, 0.0] and result["size_bytes"] > 0
    assert command.startswith(f"studio export --adapter={a} --adapter={b} --out={out.resolve()} --weights=1,0 "
                              "--combine=linear\n")
    assert "-m studio export" in command and command.rstrip().endswith("--json")
    assert list(checks["prompt"][:4]) == [export_tab._short(p) for p in PROMPTS] and set(checks["result"]) <= {"passed", ""}
    assert open_chat["visible"] is True and target == {"path": str(out.resolve()), "base": str(tiny_model_dir)}
    # weights (1, 0) with linear: the merged model is the first adapter's model
    assert torch.allclose(model_logits(out, IDS), adapter_logits(tiny_model_dir, a, IDS), atol=1e-5)
    # the same folder again without "replace": refused as a message, nothing started, nothing touched
    before = sorted(p.name for p in out.iterdir())
    outs = list(export_tab.on_export(ctx, str(a), "", "cat", 0.5, "model", str(out), "float32", [], False, "zh"))
    assert len(outs) == 1 and "已存在且非空" in outs[0][1] and sorted(p.name for p in out.iterdir()) == before


def test_chat_loads_a_merged_folder_and_a_gguf_export(small_vocab_model_dir, tmp_path, capsys):
    import torch

    from studio.engine.generate import ChatModel, resolve_tuned

    adapter = make_adapter(small_vocab_model_dir, tmp_path / "adapter", seed=19)
    res = merge_adapter(adapter, tmp_path / "exp", gguf=("f16",))
    out, gguf_file = Path(res["out_dir"]), Path(res["gguf"][0]["path"])
    src = resolve_tuned(gguf_file)
    assert src.kind == "gguf" and src.separate and src.base == str(small_vocab_model_dir)  # base from export.json
    assert resolve_tuned(gguf_file.parent).path == gguf_file
    convo = [[{"role": "user", "content": "What is the capital of France?"}]]
    by_adapter = ChatModel(adapter=str(adapter))
    merged = ChatModel(adapter=str(out))  # 'default' base replaced by the export's own base: no default-model load
    assert merged.model_name == str(small_vocab_model_dir) and merged.tuned_separate and not by_adapter.tuned_separate
    expected = by_adapter.generate(convo, use_adapter=True, max_new_tokens=8)
    assert merged.generate(convo, use_adapter=True, max_new_tokens=8) == expected
    assert merged._model is None  # the base loads only once it is asked for (studio chat holds one model)
    assert merged.generate(convo, max_new_tokens=8) == by_adapter.generate(convo, max_new_tokens=8)
    from_gguf = ChatModel(adapter=str(gguf_file))
    assert from_gguf.tuned_separate and from_gguf.model_name == str(small_vocab_model_dir)
    ids = torch.tensor([[1, 5, 77, 300, 12, 2]])  # within the 400-token vocabulary
    with torch.no_grad():
        want, got = merged.tuned_model(ids).logits, from_gguf.tuned_model(ids).logits
    assert torch.allclose(got, want, atol=res["gguf"][0]["tolerance"]) and not torch.equal(got, want)  # f16 rounding
    answer = from_gguf.generate(convo, use_adapter=True, max_new_tokens=8)[0]
    alone = tmp_path / "alone" / "mine.gguf"  # a GGUF with no HF folder beside it: tokenizer and template from the file
    alone.parent.mkdir()
    shutil.copy(gguf_file, alone)
    from_file = ChatModel(model=str(small_vocab_model_dir), adapter=str(alone))
    assert from_file.tuned_tokenizer is not from_file.tokenizer and from_file.tuned_tokenizer.chat_template
    assert from_file.generate(convo, use_adapter=True, max_new_tokens=8) == [answer]
    # ``studio chat --adapter FILE.gguf`` answers through the same loader
    import argparse

    from studio.commands import chat as chat_cmd

    parser = argparse.ArgumentParser(prog="studio")
    chat_cmd.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["chat", "--adapter", str(gguf_file), "--prompt", convo[0][0]["content"], "--json",
                              "--max-new-tokens", "8"])
    assert args.run(args) == 0
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert line["answer"].strip() == answer
