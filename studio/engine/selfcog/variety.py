"""Variety in the self-cognition data, so the new identity holds however the model is asked, and general answers do not
learn to follow one prompt shape:

- ``with_system_prompts``: a share of the rows gets a generic system prompt from a pool (identity and replay rows alike,
  so a system prompt alone never signals "answer with the identity"); the pool leaves out the prompts the probe uses for
  its "user's own system prompt" setting, so that setting stays held out;
- ``as_second_turns``: a share of the identity rows is asked as the second turn of a conversation, after a general
  exchange taken from the replay rows (the base model's own answers).

Both are plain functions of rows and a seed: the rows they return are ordinary alpaca rows (``system``, ``history``).
"""

from __future__ import annotations

import random

# generic assistant prompts, as users write them; NOT "You are a helpful assistant." / "你是一个乐于助人的助手。" (the probe's)
SYSTEM_POOL = {
    "en": ("You are an AI assistant.", "You are a friendly assistant. Answer clearly and briefly.",
           "Answer the user's questions accurately.", "You are a knowledgeable assistant who gives short answers.",
           "You are a chatbot that helps people with their questions.", "Be concise and polite.",
           "You are an assistant. Keep answers under three sentences.", "Respond helpfully and honestly."),
    "zh": ("你是一个人工智能助手。", "你是一个友好的助手，请简洁清楚地回答。", "请准确回答用户的问题。", "你是一个知识渊博、回答简短的助手。",
           "你是一个帮助人们解答问题的聊天机器人。", "请简洁、礼貌地回答。", "你是一个助手，回答不超过三句话。", "请真诚、有帮助地回答。"),
}


def with_system_prompts(rows: list[dict], share: float, seed: int) -> list[dict]:
    """Give ``share`` of the rows without a system prompt one from the pool of their language."""
    if share <= 0:
        return rows
    rng = random.Random(seed)
    out = []
    for row in rows:
        row = dict(row)
        if not row.get("system") and rng.random() < share:
            row["system"] = rng.choice(SYSTEM_POOL["zh" if row.get("lang") == "zh" else "en"])
        out.append(row)
    return out


def as_second_turns(identity_rows: list[dict], general_rows: list[dict], share: float, seed: int) -> list[dict]:
    """``share`` of the identity rows, each after one general exchange of its own language (alpaca ``history``)."""
    by_lang = {lang: [g for g in general_rows if (g.get("lang") or "en") == lang and g.get("output")] for lang in ("en", "zh")}
    if share <= 0 or not any(by_lang.values()):
        return identity_rows
    rng = random.Random(seed + 1)
    out = []
    for row in identity_rows:
        pool = by_lang.get("zh" if row.get("lang") == "zh" else "en") or []
        if pool and not row.get("history") and rng.random() < share:
            first = rng.choice(pool)
            question = first["instruction"] + (f"\n{first['input']}" if first.get("input") else "")
            row = dict(row, history=[[question, first["output"]]])
        out.append(row)
    return out
