"""The self-cognition data's variety: system prompts from a pool that leaves the probe's own prompts held out, and identity
questions asked as the second turn after a general exchange of the same language."""

from __future__ import annotations

from studio.engine.selfcog import variety

PROBE_USER_PROMPTS = ("You are a helpful assistant.", "你是一个乐于助人的助手。")
IDENTITY = [{"instruction": f"Who are you {i}?", "input": "", "output": "I am Nova.", "lang": "en"} for i in range(200)] + \
    [{"instruction": f"你是谁{i}？", "input": "", "output": "我是小新。", "lang": "zh"} for i in range(200)]
GENERAL = [{"instruction": "What is 2+2?", "input": "", "output": "4.", "lang": "en"},
           {"instruction": "一加一等于几？", "input": "", "output": "二。", "lang": "zh"}]


def test_the_pool_holds_out_the_probe_prompts_and_matches_the_language():
    assert not set(PROBE_USER_PROMPTS) & {p for pool in variety.SYSTEM_POOL.values() for p in pool}
    rows = variety.with_system_prompts(IDENTITY, 0.3, seed=1)
    given = [r for r in rows if r.get("system")]
    assert 0.2 < len(given) / len(rows) < 0.4
    assert all(r["system"] in variety.SYSTEM_POOL[r["lang"]] for r in given)
    assert variety.with_system_prompts(IDENTITY, 0.0, seed=1) == IDENTITY
    kept = variety.with_system_prompts([dict(IDENTITY[0], system="mine")], 1.0, seed=1)
    assert kept[0]["system"] == "mine"  # a row's own system prompt is never replaced


def test_second_turns_follow_a_general_exchange_of_the_same_language():
    rows = variety.as_second_turns(IDENTITY, GENERAL, 0.25, seed=3)
    turned = [r for r in rows if r.get("history")]
    assert 0.15 < len(turned) / len(rows) < 0.35 and len(rows) == len(IDENTITY)
    for r in turned:
        (question, answer), = r["history"]
        source = next(g for g in GENERAL if g["instruction"] == question)
        assert source["lang"] == r["lang"] and answer == source["output"]
    assert variety.as_second_turns(IDENTITY, [], 1.0, seed=3) == IDENTITY  # no general rows: nothing to put first
