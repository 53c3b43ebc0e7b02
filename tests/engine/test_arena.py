"""The arena (issue 17, item 1): votes -> preference pairs in a versioned data workspace -> win rates -> a DPO run.

Pairs and win rates are checked on rounds with known answers (no model); a blind round on two tiny random Llamas checks
the shuffle and the reveal; the end of the path trains 2 DPO steps on the tiny model from the votes' dataset.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from studio.engine import arena as A
from studio.engine.access import FULL, AccessError


def side(key: str) -> A.Contender:
    return A.Contender(key, key, "default", "" if key == "base" else key)


def answered(answers: list[str], keys=("base", "run-a", "run-b", "run-c"), prompt="Who are you?") -> A.Round:
    return A.Round("r" + "".join(a[:1] for a in answers), prompt, "", [side(k) for k in keys[:len(answers)]],
                   answers=list(answers))


@pytest.fixture
def arena_home(tmp_path, monkeypatch):
    monkeypatch.setenv("STUDIO_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


# -- votes -> pairs ----------------------------------------------------------------------------------------------------


def test_best_side_vote_pairs_the_winner_against_every_other_side():
    rnd = answered(["base says hi", "A good answer.", "meh"], keys=("base", "run-a", "run-b"))
    rows = A.pairs_for(rnd, "B")
    assert [(r["chosen"], r["rejected"]) for r in rows] == [("A good answer.", "base says hi"), ("A good answer.", "meh")]
    assert {r["chosen_model"] for r in rows} == {"run-a"} and [r["rejected_model"] for r in rows] == ["base", "run-b"]
    assert all(r["prompt"] == "Who are you?" and r["vote"] == "B" and "system" not in r for r in rows)


def test_a_better_answer_becomes_chosen_against_every_shown_answer_and_ties_write_nothing():
    rnd = answered(["one", "two"])
    edited = A.pairs_for(rnd, "A", better="one, but better")  # the winner's own answer loses to the edit too
    assert [(r["chosen"], r["rejected"], r["chosen_model"]) for r in edited] == [
        ("one, but better", "one", "edited"), ("one, but better", "two", "edited")]
    assert len(A.pairs_for(rnd, "bad", better="Neither: this.")) == 2
    assert A.pairs_for(rnd, "tie") == [] and A.pairs_for(rnd, "bad") == []
    assert A.pairs_for(answered(["same", "same"]), "A") == []  # chosen == rejected is no preference
    assert A.pairs_for(answered(["x", "  "]), "A") == []  # an empty answer is not a rejected answer


@pytest.mark.parametrize("vote", ["C", "", "a", "both", None])
def test_bad_votes_are_named(vote):
    with pytest.raises(A.ArenaError, match="one of A, B, tie, bad"):
        A.pairs_for(answered(["x", "y"]), vote)


def test_rounds_need_two_to_four_distinct_models_and_a_prompt():
    arena = A.Arena()
    with pytest.raises(A.ArenaError, match="2 to 4"):
        arena.start([side("base")], "hi")
    with pytest.raises(A.ArenaError, match="2 to 4"):
        arena.start([side(k) for k in ("base", "a", "b", "c", "d")], "hi")
    with pytest.raises(A.ArenaError, match="twice"):
        arena.start([side("a"), side("a")], "hi")
    with pytest.raises(A.ArenaError, match="prompt"):
        arena.start([side("a"), side("b")], "   ")
    with pytest.raises(A.ArenaError, match="unknown or already voted"):
        arena.vote("nope", "A")


def test_contenders_follow_the_access_policy(tmp_path):
    web = FULL.__class__(roots=(tmp_path.resolve(),), allow_code=False)
    with pytest.raises(AccessError, match="outside the folders"):
        A.contender("/etc", "default", access=web)
    with pytest.raises(AccessError, match="outside the folders"):
        A.contender("base", "/etc", access=web)
    with pytest.raises(A.ArenaError, match="no such"):
        A.contender(str(tmp_path / "missing"), "default", access=web)
    assert A.contender("base", "default", access=web) == A.Contender("base:default", "base (default)", "default", "")
    with pytest.raises(AccessError):
        A.dataset_name("../..")


# -- pairs -> a versioned dataset, win rates ----------------------------------------------------------------------------


def test_votes_make_one_version_each_and_the_data_tab_opens_the_dataset(arena_home):
    from studio.engine.data.view import open_dataset
    from studio.engine.data.workspace import Workspace

    r1 = answered(["base answer", "run answer"])
    first = A.record_vote(r1, "B", dataset="my votes")
    assert first["pairs"] == 1 and first["version"] == 1 and first["rows"] == 1
    assert Path(first["dataset"]) == arena_home / "datasets" / "my-votes"
    assert A.record_vote(answered(["p", "q"]), "tie", dataset="my votes")["pairs"] == 0  # counted, nothing written
    third = A.record_vote(answered(["p", "q", "r"], prompt="2+2?"), "bad", better="4", dataset="my votes")
    assert third["pairs"] == 3 and third["version"] == 2 and third["rows"] == 4
    ws = Workspace(first["dataset"])
    assert [v.action for v in ws.history()] == ["import", "add"]
    view = open_dataset(ws.spec)
    assert view.format == "pref_prompt" and len(view) == 4
    row = view.row(3)
    assert (row["prompt"], row["chosen"], row["rejected"], row["vote"]) == ("2+2?", "4", "r", "bad")
    votes = A.read_votes("my votes")
    assert [v["vote"] for v in votes] == ["B", "tie", "bad"] and votes[0]["answers"] == ["base answer", "run answer"]
    assert oct(Path(first["log"]).stat().st_mode & 0o777) == "0o600"


def test_win_rates_count_each_pair_and_half_ties():
    def vote(sides, v):
        return {"vote": v, "models": [{"side": s, "key": k, "label": k} for s, k in zip("ABCD", sides)]}

    votes = [vote(["base", "run"], "B"), vote(["run", "base"], "A"), vote(["base", "run"], "tie"),
             vote(["run", "base"], "bad"), vote(["base", "run", "gguf"], "C")]
    rows = {(r["model_1"], r["model_2"]): r for r in A.win_rates(votes)}
    br = rows[("base", "run")]
    assert (br["votes"], br["wins_1"], br["wins_2"], br["ties"], br["both_bad"]) == (4, 0, 2, 1, 1)
    assert br["win_rate_1"] == 0.25  # (0 + 0.5 * 2) / 4
    assert rows[("base", "gguf")]["wins_2"] == 1 and rows[("gguf", "run")]["wins_1"] == 1  # the winner's pairs only
    assert sum(r["votes"] for r in rows.values()) == 6


def test_dpo_config_trains_the_preset_on_the_votes(arena_home):
    with pytest.raises(A.ArenaError, match="vote in the arena first"):
        A.dpo_config("nothing-yet")
    res = A.record_vote(answered(["bad", "good"]), "B", dataset="v")
    cfg = A.dpo_config("v", model="some/base", overrides={"training.max_steps": 3})
    assert cfg.data.datasets == [res["dataset"]] and cfg.method.stage == "dpo" and cfg.model.name_or_path == "some/base"
    assert cfg.training.max_steps == 3 and cfg.preference.beta == 0.1  # the rest is presets/dpo.yaml


# -- real rounds on tiny models, and DPO on the votes ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def other_tiny_model(tiny_model_dir, tmp_path_factory) -> Path:
    """The tiny model with other random weights: a second contender whose answers differ."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(1)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.2)
    out = tmp_path_factory.mktemp("tiny_other")
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(out)
    return out


def test_blind_round_shuffles_reveals_after_the_vote_and_the_votes_train_dpo(tiny_model_dir, other_tiny_model, arena_home,
                                                                             tmp_path):
    import torch

    from studio.engine import rundir
    from studio.engine.train.runner import run

    arena = A.Arena()
    sides = [A.contender("base", str(tiny_model_dir), access=FULL), A.contender(str(other_tiny_model), str(tiny_model_dir),
                                                                                 access=FULL)]
    assert sides[1].model == str(tiny_model_dir) and sides[1].adapter == str(other_tiny_model)
    orders = set()
    for seed in range(6):
        torch.manual_seed(seed)
        rnd = arena.play(sides, f"Say something {seed}.", blind=True, seed=seed,
                         settings={"temperature": 1.0, "max_new_tokens": 6})
        assert rnd.public()["models"] is None and set(rnd.public()["answers"]) == {"A", "B"}
        orders.add(tuple(c.key for c in rnd.sides))
        res = arena.vote(rnd.id, "A", better=f"A fine answer number {seed}.", dataset="arena")
        assert res["reveal"] == rnd.reveal() and res["pairs"] == 2
    assert len(orders) == 2  # both orders were shown
    cfg = A.dpo_config("arena", model=str(tiny_model_dir), overrides={
        "training.max_steps": 2, "training.per_device_train_batch_size": 2, "training.cutoff_len": 64,
        "output.runs_dir": str(tmp_path / "runs"), "lora.r": 2, "lora.alpha": 4})
    run_dir = rundir.new_run_dir(tmp_path / "runs", cfg.output.run_name)
    assert run(cfg, run_dir) == 0, rundir.tail_log(run_dir)
    status = rundir.read_status(run_dir)
    report = json.loads((run_dir / "data_report.json").read_text())
    assert status["state"] == "finished" and status["step"] == 2
    assert report["datasets"][0]["dataset"] == str(arena_home / "datasets" / "arena") and report["train_rows"] == 12
    assert (run_dir / rundir.ADAPTER / "adapter_model.safetensors").is_file()
