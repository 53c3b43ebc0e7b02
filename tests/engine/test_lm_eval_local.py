"""lm-evaluation-harness for real (issue 17, item 3): the studio's own bilingual tasks (``assets/lm_eval``: a task YAML over a
local JSON file, English and Chinese, no hub), base vs tuned, started from the Evaluate tab's handler, which runs
``studio eval --lm-eval ...`` as a child. Skipped with the reason when lm-eval is not installed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from studio.engine.evaluate import lm_harness

pytestmark = pytest.mark.skipif(not lm_harness.available(), reason=lm_harness.INSTALL_HINT)


def test_shipped_tasks_are_local_and_bilingual():
    import yaml

    folder = lm_harness.local_tasks_dir() / "studio_qa"
    for lang in ("en", "zh"):
        rows = json.loads((folder / f"studio_qa_{lang}.json").read_text(encoding="utf-8"))
        assert len(rows) == 32 and all(len(r["choices"]) == 4 and 0 <= r["answer"] < 4 for r in rows)
        assert len({r["answer"] for r in rows}) == 4  # the right answer is not always in the same place
        text = (folder / f"studio_qa_{lang}.yaml").read_text(encoding="utf-8")
        assert "hf://" not in text and "dataset_path" not in text  # nothing to download
        spec = yaml.load(text.replace("!function", ""), Loader=yaml.SafeLoader)
        assert spec["task"] == f"studio_qa_{lang}" and spec["dataset_kwargs"] == {"lang": lang}
    zh = json.loads((folder / "studio_qa_zh.json").read_text(encoding="utf-8"))
    assert all(any("\u4e00" <= ch <= "\u9fff" for ch in r["question"]) for r in zh)


def test_evaluate_tab_runs_the_shipped_tasks_base_vs_tuned(tiny_model_dir, tmp_path, monkeypatch):
    from studio.engine.jobs import evaluation as eval_jobs
    from studio.ui.tabs import evaluate as eval_tab
    from tests.engine.test_export import make_adapter
    from tests.helpers import web_context

    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")  # proof that no hub is needed (the child inherits it)
    adapter = make_adapter(tiny_model_dir, tmp_path / "adapter", seed=3)
    ctx = web_context(tmp_path / "runs")
    out = tmp_path / "bench"
    try:
        job, command, message, _ = eval_tab.on_lm_start(ctx, str(tiny_model_dir), str(adapter), True, str(out),
                                                        eval_tab.LM_TASKS, 8, "en")
        assert job == {"out": str(out)}, message
        assert "--lm-eval=studio_qa_en,studio_qa_zh" in command and "--compare" in command
        info = eval_jobs.wait(out, timeout=900, access=ctx.access)
    finally:
        ctx.close()
    assert info["state"] == "finished", eval_jobs.log_tail(out, 40)
    rows = json.loads((out / "results.json").read_text())["lm_eval"]
    got = {(r["task"], r["metric"]) for r in rows}
    assert got == {(t, m) for t in ("studio_qa_en", "studio_qa_zh") for m in ("acc", "acc_norm")}
    for r in rows:
        assert 0 <= r["base"] <= 1 and 0 <= r["tuned"] <= 1 and r["delta"] == pytest.approx(r["tuned"] - r["base"])
        assert (r["base"] * 8).is_integer()  # 8 questions per task (--lm-eval-limit)
    table = eval_tab.result_frames(json.loads((out / "results.json").read_text()))[2]
    assert len(table) == 4 and list(table.columns)[:3] == ["task", "metric", "filter"]
    assert Path(out / "eval.log").read_text().count("lm-eval: studio_qa_en, studio_qa_zh") == 1
