"""Evaluate and predict: text metrics against hand-computed values (en, zh), custom metrics, named errors, the run's
held-out split rebuilt exactly as training made it, resumable predictions, base-vs-tuned compare on a tiny model with a
random LoRA adapter, perplexity checked against an independent computation, the CLI's JSON last line, the lm-eval hook
(missing, and a stand-in module), and the Evaluate tab in the Blocks.

Run: ``OMP_NUM_THREADS=1 pytest -q tests/test_evaluate.py``.
"""

from __future__ import annotations

import importlib.machinery
import json
import math
import shutil
import sys
import types
from pathlib import Path

import pytest

from studio import config as C
from studio.engine.evaluate import predict as E
from studio.engine.evaluate import lm_harness
from studio.engine.evaluate import scores as M
from studio.engine.data.load import DataError

from tests.helpers import TEST_ROOTS, wait_until, web_context, write_jsonl

# ----------------------------------------------------------------------------------------------------------------------------
# Metrics (pure)


def test_tokenize_splits_cjk_characters_and_lowercases_words():
    assert M.tokenize("Nova是AI助手。Hello, World!") == ["nova", "是", "ai", "助", "手", "hello", "world"]
    assert M.tokenize("  ¡¿...  ") == []


def test_english_metrics_by_hand():
    pred, ref = "The cat sat on the mat.", "the cat is on the mat"
    # tokens: the cat sat on the mat / the cat is on the mat; common multiset {the x2, cat, on, mat} = 5 of 6 and 6
    assert M.exact_match(pred, ref) == 0.0
    assert M.token_f1(pred, ref) == pytest.approx(5 / 6)
    # LCS = the cat on the mat (5): P = R = 5/6
    assert M.rouge_l(pred, ref) == pytest.approx(5 / 6)
    # BLEU: p1 = 5/6; bigrams 3 of 5 match -> (3+1)/(5+1); trigrams 1 of 4 (on the mat) -> (1+1)/(4+1);
    # 4-grams 0 of 3 -> (0+1)/(3+1); same length, BP = 1: (5/6 * 4/6 * 2/5 * 1/4) ** (1/4) = (1/18) ** 0.25
    assert M.corpus_bleu([pred], [ref]) == pytest.approx((1 / 18) ** 0.25)
    # brevity: "the cat" vs 4 reference tokens: p1 = 1, p2 = (1+1)/(1+1), p3 = p4 = (0+1)/(max(1,0)+1) = 1/2,
    # BP = exp(1 - 4/2): BLEU = exp(-1) * (1/4) ** (1/4)
    assert M.corpus_bleu(["the cat"], ["the cat sat down"]) == pytest.approx(math.exp(-1) * 0.25 ** 0.25)
    assert M.exact_match("Paris.", "paris") == 1.0
    assert M.corpus_bleu(["dog"], ["the cat"]) == 0.0  # no unigram in common


def test_chinese_metrics_by_hand():
    # characters: 我 爱 北 京 / 我 爱 上 海: 2 common of 4 and 4 -> F1 = 0.5; LCS 我爱 = 2 -> 0.5
    assert M.token_f1("我爱北京", "我爱上海") == pytest.approx(0.5)
    assert M.rouge_l("我爱北京", "我爱上海") == pytest.approx(0.5)
    assert M.exact_match("北京。", "北京") == 1.0
    # 北京是首都 vs 首都是北京: the longest common subsequences are 北京, 首都, 是首? (no: 首 precedes 是 in the reference)
    # ... so LCS = 2 of 5 characters on both sides: P = R = F = 2/5
    assert M.rouge_l("北京是首都", "首都是北京") == pytest.approx(0.4)
    # corpus BLEU over two rows (character tokens): row1 我爱北京 / 我爱上海, row2 你好 / 你好
    # unigrams: 2/4 + 2/2 = 4/6; bigrams: 我爱 (1 of 3) + 你好 (1 of 1) = 2/4 -> 3/5; trigrams 0 of 2 + 0 of 0 = 0/2 -> 1/3;
    # 4-grams 0 of 1 -> 1/2; c = r = 6, BP = 1
    expected = (4 / 6 * 3 / 5 * 1 / 3 * 1 / 2) ** 0.25
    assert M.corpus_bleu(["我爱北京", "你好"], ["我爱上海", "你好"]) == pytest.approx(expected)


def test_mixed_and_empty_rows():
    assert M.token_f1("Nova 是 AI", "我是Nova") == pytest.approx(2 * (2 / 3) * (2 / 3) / (4 / 3))  # nova, 是 shared
    assert M.token_f1("", "") == 1.0 and M.token_f1("x", "") == 0.0 and M.rouge_l("", "a") == 0.0
    summary, rows = M.score(["a b", "c"], ["a b", "d"], ["em", "f1", "bleu"])
    assert summary["em"] == 0.5 and rows["em"] == [1.0, 0.0] and "bleu" in summary and "bleu" not in rows


def test_metric_names_are_checked():
    assert M.parse_metrics("EM, f1,rouge-l,BLEU,ppl,f1") == ["em", "f1", "rougeL", "bleu", "ppl"]
    with pytest.raises(M.MetricError, match="unknown metric 'accuracy'.*em, f1, rougeL, bleu, ppl"):
        M.parse_metrics("f1,accuracy")


def test_custom_metrics_load_and_run(tmp_path):
    f = tmp_path / "my_metrics.py"
    f.write_text("def last_word(prediction, reference):\n    return float(reference.split()[-1] in prediction)\n\n"
                 "def total_chars(predictions, references):\n    return sum(len(p) for p in predictions)\n\n"
                 "def broken(prediction, reference):\n    return 'high'\n\nNOT_A_FUNCTION = 3\n")
    row = M.load_custom_metric(f"{f}:last_word")
    corpus = M.load_custom_metric(f"{f}:total_chars")
    assert (row.corpus_level, corpus.corpus_level) == (False, True)
    summary, per_row = M.score(["it is 4", "no"], ["answer 4", "answer 5"], ["em"], [row, corpus])
    assert summary["last_word"] == 0.5 and per_row["last_word"] == [1.0, 0.0]
    assert summary["total_chars"] == len("it is 4") + len("no") and "total_chars" not in per_row
    with pytest.raises(M.MetricError, match="no function 'nope'.*functions there: broken, last_word, total_chars"):
        M.load_custom_metric(f"{f}:nope")
    with pytest.raises(M.MetricError, match="no such file"):
        M.load_custom_metric(f"{tmp_path / 'missing.py'}:fn")
    with pytest.raises(M.MetricError, match="path/to/file.py:function_name"):
        M.load_custom_metric(str(f))
    with pytest.raises(M.MetricError, match="returned 'high' on row 0"):
        M.score(["a"], ["b"], [], [M.load_custom_metric(f"{f}:broken")])
    bad = tmp_path / "bad.py"
    bad.write_text("def f(a, b):\n    return (\n")
    with pytest.raises(M.MetricError, match="failed to load: SyntaxError"):
        M.load_custom_metric(f"{bad}:f")


# ----------------------------------------------------------------------------------------------------------------------------
# Rows and the held-out split


def test_bad_data_gives_named_errors(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"instruction": "q", "output": "a"}\n{"instruction": "q2"}\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"bad.jsonl: row 2: missing or empty 'output'"):
        E.dataset_rows(str(bad))
    with pytest.raises(DataError, match="no such file"):
        E.load_rows(E.EvalRequest(data=str(tmp_path / "nope.jsonl")))
    with pytest.raises(E.EvalError, match="nothing to evaluate"):
        E.load_rows(E.EvalRequest())
    with pytest.raises(E.EvalError, match="--compare needs a tuned model"):
        E.sides_for(E.EvalRequest(compare=True))


def test_rows_keep_history_and_system():
    rows = [E.to_eval_row(0, "x", [{"role": "user", "content": "q1"}, {"role": "assistant", "content": "a1"},
                                   {"role": "user", "content": "q2"}, {"role": "assistant", "content": "a2"}], "be brief")]
    assert rows[0].reference == "a2" and rows[0].prompt == "q2"
    assert [m["role"] for m in rows[0].messages] == ["system", "user", "assistant", "user"]


@pytest.fixture(scope="module")
def data_file(tmp_path_factory) -> Path:
    rows = [{"instruction": f"Say the number {i}.", "input": "", "output": f"The number is {i}."} for i in range(12)]
    rows[3]["output"] = "x " * 200  # longer than the cutoff: truncated, still kept (its first tokens are trained)
    return write_jsonl(tmp_path_factory.mktemp("evaldata") / "numbers.jsonl", rows)


@pytest.fixture(scope="module")
def adapter_dir(tiny_model_dir, tmp_path_factory) -> Path:
    """A LoRA adapter with random (non-zero) A and B, so the tuned model answers differently from the base."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(1)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    peft_model = get_peft_model(model, LoraConfig(r=4, lora_alpha=32, target_modules=["q_proj", "v_proj", "o_proj"],
                                                  init_lora_weights=False))
    out = tmp_path_factory.mktemp("tiny_lora")
    peft_model.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def run_dir(tiny_model_dir, data_file, adapter_dir, tmp_path_factory) -> Path:
    """A run folder as training leaves it (config with a held-out split, adapter/, probe.json), without training."""
    run = tmp_path_factory.mktemp("runs") / "r1"
    run.mkdir()
    cfg = C.from_dict({"model": {"name_or_path": str(tiny_model_dir)},
                       "data": {"datasets": [str(data_file)], "val_size": 0.25},
                       "training": {"seed": 7, "cutoff_len": 48}})
    C.save(cfg, run / "config.yaml")
    shutil.copytree(adapter_dir, run / "adapter")
    probe = {"identity": {"base": 0.0, "tuned": 0.75, "per_lang": {"en": {"base": 0.0, "tuned": 0.75, "n": 4}}, "n": 4},
             "retention": {"score": 1.0, "base_right": 2, "kept": 2, "tuned_right": 2, "identity_leaks": 0, "n": 3}}
    (run / "probe.json").write_text(json.dumps(probe), encoding="utf-8")
    return run


def test_val_split_is_the_one_training_held_out(run_dir):
    from studio.engine.data.load import prepare_sft_data, render_example
    from studio.engine.models import load_tokenizer

    cfg = C.load(run_dir / "config.yaml")
    tok = load_tokenizer(cfg.model.name_or_path)
    held_out = prepare_sft_data(cfg.data, tok, cfg.training.cutoff_len, cfg.training.seed).eval
    rows = E.val_rows(run_dir)
    assert len(rows) == len(held_out) == 3
    rebuilt = [render_example(tok, r.messages + [{"role": "assistant", "content": r.reference}], cfg.training.cutoff_len)
               for r in rows]
    assert [r.input_ids for r in rebuilt] == [e["input_ids"] for e in held_out]
    assert len({r.source for r in rows}) == 3 and all("numbers.jsonl: row" in r.source for r in rows)


# ----------------------------------------------------------------------------------------------------------------------------
# Prediction, resume, compare, perplexity (tiny model)


@pytest.fixture(scope="module")
def chat(tiny_model_dir, adapter_dir):
    from studio.engine.generate import ChatModel

    return ChatModel(str(tiny_model_dir), str(adapter_dir))


class Interrupt(Exception):
    pass


def test_predictions_resume_after_an_interruption(chat, tiny_model_dir, data_file, tmp_path):
    req = E.EvalRequest(model=str(tiny_model_dir), data=f"{data_file}@10", metrics=["f1"],
                        gen=E.GenSettings(max_new_tokens=6, batch_size=2))
    generated: list[int] = []
    real = chat.generate

    def counting(convs, **kw):
        generated.append(len(convs))
        return real(convs, **kw)

    def stop_after_4(info):
        if info["phase"] == "generate" and info["done"] >= 4:
            raise Interrupt

    out = tmp_path / "ev"
    chat.generate = counting
    try:
        with pytest.raises(Interrupt):
            E.evaluate(req, out, progress=stop_after_4, chat=chat)
        assert sum(generated) == 4 and E.read_progress(out)["state"] == "failed"
        with open(out / E.PREDICTIONS, "a", encoding="utf-8") as fh:  # a line torn by a kill mid-write
            fh.write('{"row": 7, "model": "ba')
        generated.clear()
        seen = []
        result = E.evaluate(req, out, progress=seen.append, chat=chat)
    finally:
        chat.generate = real
    assert sum(generated) == 6  # only the rows not yet answered
    assert seen[0]["done"] == 4 and seen[-1]["done"] == 10 and seen[-1]["eta"] == 0
    lines = [json.loads(x) for x in (out / E.PREDICTIONS).read_text(encoding="utf-8").splitlines()]
    assert sorted(x["row"] for x in lines) == list(range(10)) and {x["model"] for x in lines} == {"base"}
    assert {"prompt", "reference", "prediction", "source"} <= set(lines[0])
    fresh = E.evaluate(req, tmp_path / "fresh", chat=chat)  # same batches, greedy: same answers as the resumed run
    again = [json.loads(x) for x in (tmp_path / "fresh" / E.PREDICTIONS).read_text(encoding="utf-8").splitlines()]
    assert {x["row"]: x["prediction"] for x in lines} == {x["row"]: x["prediction"] for x in again}
    assert result["table"] == fresh["table"] and E.read_progress(out)["state"] == "finished"
    other = E.EvalRequest(model=str(tiny_model_dir), data=f"{data_file}@10", metrics=["f1"],
                          gen=E.GenSettings(max_new_tokens=12))
    with pytest.raises(E.EvalError, match="max_new_tokens: 6 -> 12"):  # never mixes answers made with other settings
        E.evaluate(other, out, chat=chat)


def test_compare_base_and_tuned_in_one_job(chat, tiny_model_dir, adapter_dir, run_dir, data_file, tmp_path):
    gen = E.GenSettings(max_new_tokens=6, batch_size=4)
    rows = E.dataset_rows(f"{data_file}@6")
    tuned = chat.generate([r.messages for r in rows], use_adapter=True, max_new_tokens=6, batch_size=4)
    base = chat.generate([r.messages for r in rows], use_adapter=False, max_new_tokens=6, batch_size=4)
    assert tuned != base  # the random adapter changes the answers
    # a dataset whose reference for row 2 is exactly what the tuned model says: that row must top "changed most"
    data = [{"instruction": r.prompt, "input": "", "output": tuned[i] if i == 2 else "zzz"} for i, r in enumerate(rows)]
    assert tuned[2] and tuned[2] != base[2]
    spec = str(write_jsonl(tmp_path / "ref.jsonl", data))
    req = E.EvalRequest(model=str(tiny_model_dir), adapter=str(run_dir), data=spec, compare=True,
                        metrics=["em", "f1", "rougeL", "bleu", "ppl"], gen=gen)
    result = E.evaluate(req, tmp_path / "cmp", chat=chat)
    table = result["table"]
    assert set(table) == {"em", "f1", "rougeL", "bleu", "ppl", "loss"}
    assert table["em"]["tuned"] == pytest.approx(1 / 6, abs=1e-6) and table["em"]["base"] == 0.0  # (6 decimals kept)
    assert table["f1"]["delta"] == pytest.approx(table["f1"]["tuned"] - table["f1"]["base"], abs=1e-6)
    assert table["ppl"]["base"] != table["ppl"]["tuned"]
    top = result["changed_most"][0]
    assert top["row"] == 2 and top["tuned"] == tuned[2] and top["tuned_score"] == 1.0 and top["delta"] > 0
    assert result["probe"]["identity"]["tuned"] == 0.75  # the run's probe.json, shown next to the table
    lines = [json.loads(x) for x in (tmp_path / "cmp" / E.PREDICTIONS).read_text(encoding="utf-8").splitlines()]
    assert len(lines) == 12 and {(x["model"], x["row"]) for x in lines} == {(m, i) for m in ("base", "tuned") for i in range(6)}
    assert E.read_results(tmp_path / "cmp")["table"] == table


def test_perplexity_matches_an_independent_computation(chat, data_file):
    import torch

    rows = E.dataset_rows(f"{data_file}@7")  # row 4 (index 3) is the long one: uneven lengths exercise the padding
    losses = E.reference_losses(chat, rows, "tuned", batch_size=3)
    total_nll, total_tokens = 0.0, 0
    model, tok = chat.model, chat.tuned_tokenizer  # adapter active: the tuned side
    for r in rows:
        ids, mask = E.loss_example(tok, r.messages, r.reference)
        answer = tok.decode([t for t, m in zip(ids, mask) if m])
        assert answer.startswith(r.reference) and "<|im_end|>" in answer  # the reference and its end-of-turn token
        labels = torch.tensor([[t if m else -100 for t, m in zip(ids, mask)]])
        with torch.inference_mode():
            mean = model(input_ids=torch.tensor([ids]), labels=labels).loss.item()  # HF's own shifted mean
        n = int((labels[0, 1:] != -100).sum())
        total_nll, total_tokens = total_nll + mean * n, total_tokens + n
    ppl = E.perplexity(losses)
    assert ppl["tokens"] == total_tokens
    assert ppl["loss"] == pytest.approx(total_nll / total_tokens, rel=1e-4)
    assert ppl["ppl"] == pytest.approx(math.exp(total_nll / total_tokens), rel=1e-4)


def test_changed_most_prefers_a_graded_metric_that_moved():
    rows = [E.EvalRow(i, f"s{i}", [{"role": "user", "content": f"q{i}"}], "ref") for i in range(3)]
    per_row = {"base": {"em": [0.0, 0.0, 0.0], "f1": [0.1, 0.5, 0.2]}, "tuned": {"em": [0.0, 0.0, 0.0], "f1": [0.1, 0.9, 0.0]}}
    preds = {"base": ["a", "b", "c"], "tuned": ["a", "B", "C"]}
    out = E.changed_most(rows, preds, per_row)
    assert [(r["row"], r["metric"], r["delta"]) for r in out] == [(1, "f1", 0.4), (2, "f1", -0.2)]  # row 0 did not move
    assert out[0]["base"] == "b" and out[0]["tuned"] == "B"
    still = {"base": {"em": [0.0], "loss": [2.0]}, "tuned": {"em": [0.0], "loss": [1.5]}}
    assert [(r["metric"], r["delta"]) for r in E.changed_most(rows[:1], {}, still)] == [("loss", -0.5)]


# ----------------------------------------------------------------------------------------------------------------------------
# CLI, lm-eval hook, UI


def test_cli_prints_the_table_as_json_last(run_dir, capsys, tmp_path):
    from studio.cli import main

    code = main(["eval", "--adapter", str(run_dir), "--split", "val", "--metrics", "em,f1", "--compare",
                 "--max-new-tokens", "4", "--out", str(tmp_path / "cli")])
    out, err = capsys.readouterr()
    assert code == 0, err
    table = json.loads(out.strip().splitlines()[-1])
    assert set(table) == {"em", "f1"} and set(table["f1"]) == {"base", "tuned", "delta"}
    assert "[generate" in err and "ETA" in err
    assert len((tmp_path / "cli" / E.PREDICTIONS).read_text().splitlines()) == 6  # 3 held-out rows x 2 models
    assert main(["eval", "--adapter", str(run_dir), "--metrics", "f1,accuracy", "--out", str(tmp_path / "x")]) == 2
    assert "unknown metric 'accuracy'" in capsys.readouterr().err
    assert main(["eval", "--data", str(tmp_path / "none.jsonl"), "--out", str(tmp_path / "y")]) == 2
    assert "none.jsonl: no such file" in capsys.readouterr().err


def test_lm_eval_missing_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "lm_eval", None)  # hidden even where it is installed
    assert not lm_harness.available()
    with pytest.raises(lm_harness.LmEvalMissing, match="pip install lm-eval"):
        lm_harness.run("default", ["arc_easy"])


def test_lm_eval_hook_passes_the_adapter_as_peft(monkeypatch, tiny_model_dir, run_dir):
    calls = []

    def simple_evaluate(model, model_args, tasks, **kw):
        calls.append((model, model_args, tasks, kw))
        acc = 0.6 if "peft" in model_args else 0.5
        return {"results": {"arc_easy": {"alias": "arc_easy", "acc,none": acc, "acc_stderr,none": 0.05,
                                         "acc_norm,none": acc - 0.1, "acc_norm_stderr,none": 0.05}}}

    class TaskManager:  # lm_eval.tasks.TaskManager: which folders of task YAMLs it was given
        def __init__(self, include_path=None):
            self.include_path = include_path

    fake = types.ModuleType("lm_eval")
    fake.__spec__ = importlib.machinery.ModuleSpec("lm_eval", None)
    fake.simple_evaluate = simple_evaluate
    fake.tasks = types.ModuleType("lm_eval.tasks")
    fake.tasks.TaskManager = TaskManager
    monkeypatch.setitem(sys.modules, "lm_eval", fake)
    monkeypatch.setitem(sys.modules, "lm_eval.tasks", fake.tasks)
    rows = lm_harness.compare(str(tiny_model_dir), str(run_dir), ["arc_easy"], limit=5)
    assert [c[1].get("peft") for c in calls] == [None, str(run_dir / "adapter")]
    assert calls[0][1]["pretrained"] == str(tiny_model_dir) and calls[0][3]["limit"] == 5
    assert calls[0][3]["task_manager"].include_path == [str(lm_harness.local_tasks_dir())]  # the shipped tasks, by name
    acc = next(r for r in rows if r["metric"] == "acc")
    assert (acc["base"], acc["tuned"], acc["delta"]) == (0.5, 0.6, pytest.approx(0.1))
    assert {r["metric"] for r in rows} == {"acc", "acc_norm"}


def test_evaluate_tab_builds_and_shows_results(tmp_path, run_dir):
    import gradio as gr

    from studio.engine.jobs import evaluation as eval_jobs
    from studio.ui import app
    from studio.ui.tabs import evaluate as eval_tab
    from studio.ui.context import AppContext

    ctx = AppContext.create(runs_root=run_dir.parent, start_jobs=False, allow_paths=TEST_ROOTS)
    refs = app.build(ctx)
    assert "eval" in refs.tabs and isinstance(refs.evaluate.table, gr.Dataframe)
    assert refs.evaluate.start._id in {b for fn in refs.demo.fns.values() for b, _ in fn.targets}
    adapter = str(run_dir / "adapter")
    assert adapter in [value for _, value in refs.evaluate.run.choices]
    picked = eval_tab.on_run(ctx, adapter, "en")
    assert picked[0] == adapter and picked[2] == "val" and "75%" in picked[4]
    assert eval_jobs.default_out_dir(adapter, "", "val") == run_dir / "eval" / "val"
    assert eval_jobs.default_out_dir(str(run_dir), "/d/qa.jsonl#x@50", "all") == run_dir / "eval" / "qa-x-50"
    assert eval_jobs.default_out_dir("", "/d/qa.jsonl", "all").parent.name == "evals"  # not a run: a fresh folder
    argv = eval_tab.form_argv(ctx, "default", adapter, "val", "", ["f1", "ppl"], "", True, 64, 0.0, 4, "/tmp/o")
    assert argv[1:4] == ["-m", "studio", "eval"] and "--split=val" in argv and "--out=/tmp/o" in argv
    assert "--metrics=f1,ppl" in argv and "--compare" in argv and not any(a.startswith("--data") for a in argv)
    with pytest.raises(eval_tab.FormIncomplete):
        eval_tab.form_argv(ctx, "default", "", "val", "", ["f1"], "", False, 64, 0.0, 4, "/tmp/o")
    with pytest.raises(PermissionError, match="--allow-code"):  # a custom metric is code: refused from the page
        eval_tab.form_argv(ctx, "default", adapter, "val", "", ["f1"], "m.py:fn", True, 64, 0.0, 4, "/tmp/o")
    out = tmp_path / "shown"  # a finished evaluation's folder, as the child leaves it
    out.mkdir()
    (out / E.PROGRESS).write_text(json.dumps({"state": "finished", "phase": "done", "done": 4, "total": 4}))
    (out / E.RESULTS).write_text(json.dumps({"table": {"f1": {"base": 0.1, "tuned": 0.4, "delta": 0.3}},
                                             "changed_most": [{"row": 1, "prompt": "p", "delta": 0.5}]}))
    job, bar, table, changed, lm, _ = eval_tab.on_tick(ctx, {"out": str(out)}, "zh", force=True)
    assert "已完成" in bar and table.values.tolist() == [["f1", "0.1000", "0.4000", "+0.3000"]] and len(changed) == 1
    assert all(x == gr.skip() for x in eval_tab.on_tick(ctx, job, "zh"))  # unchanged folder: nothing re-sent
    assert eval_jobs.status(out, access=ctx.access)["state"] == "finished"


def test_the_tab_runs_the_evaluation_as_a_child_process(run_dir, tmp_path):
    """The UI's background path for real: ``studio eval`` in its own process, followed through the output folder."""
    from studio.engine.jobs import evaluation as eval_jobs
    from studio.ui.tabs import evaluate as eval_tab

    ctx = web_context(tmp_path / "runs")
    assert "No results" in eval_tab.on_tick(ctx, {"out": str(tmp_path / "empty")}, "en", force=True)[1]
    out = tmp_path / "child"
    job, command, message, shown = eval_tab.on_start(ctx, "default", str(run_dir), "val", "", ["em", "f1"], "", True, 4,
                                                     0.0, 4, str(out), "en")
    assert shown == str(out) and command.startswith("studio eval --model=default") and "--split=val" in command
    info = wait_until(lambda: (st := eval_jobs.status(out, access=ctx.access))["state"] != "running" and st, 240,
                      "the evaluation child to end", interval=0.5)
    assert info["state"] == "finished", info.get("log_tail")
    _, bar, table, _, _, _ = eval_tab.on_tick(ctx, job, "en")
    assert "finished" in bar and table["metric"].tolist() == ["em", "f1"]
    assert list(table.columns)[1:] == ["base", "tuned", "delta"]
    assert "--compare" in " ".join(json.loads((out / eval_jobs.JOB).read_text())["argv"])
    assert not eval_jobs.stop(out, access=ctx.access)  # nothing left to stop
