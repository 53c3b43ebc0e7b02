"""A folder laid out like LLaMA-Factory's own ``data/`` (hiyouga/LLaMA-Factory @ ff6d4d12, 2026-08): a ``dataset_info.json``
with the same local entries and keys, each file holding a few rows written for this project in the same shape (none of
LLaMA-Factory's rows are copied). Used by the tests that check every such entry loads as it is.

Entries: identity, alpaca_en_demo, alpaca_zh_demo (alpaca, no declared formatting); glaive_toolcall_en/zh_demo (sharegpt
with function_call / observation turns and a ``tools`` column); mllm_demo, mllm_audio_demo, mllm_video_demo,
mllm_video_audio_demo (OpenAI-style messages with media columns); dpo_en/zh_demo (ranking sharegpt, chosen/rejected are
single messages); kto_en_demo (messages + a boolean ``label`` as ``kto_tag``); wiki_demo (``.txt``, one document per
line, ``"columns": {"prompt": "text"}``); c4_demo (``{"text": ...}`` JSON Lines, the same columns).
"""

from __future__ import annotations

import json
from pathlib import Path

OPENAI = {"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant"}
INFO = {
    "identity": {"file_name": "identity.json"},
    "alpaca_en_demo": {"file_name": "alpaca_en_demo.json"},
    "alpaca_zh_demo": {"file_name": "alpaca_zh_demo.json"},
    "glaive_toolcall_en_demo": {"file_name": "glaive_toolcall_en_demo.json", "formatting": "sharegpt",
                                "columns": {"messages": "conversations", "tools": "tools"}},
    "glaive_toolcall_zh_demo": {"file_name": "glaive_toolcall_zh_demo.json", "formatting": "sharegpt",
                                "columns": {"messages": "conversations", "tools": "tools"}},
    "mllm_demo": {"file_name": "mllm_demo.json", "formatting": "sharegpt",
                  "columns": {"messages": "messages", "images": "images"}, "tags": OPENAI},
    "mllm_audio_demo": {"file_name": "mllm_audio_demo.json", "formatting": "sharegpt",
                        "columns": {"messages": "messages", "audios": "audios"}, "tags": OPENAI},
    "mllm_video_demo": {"file_name": "mllm_video_demo.json", "formatting": "sharegpt",
                        "columns": {"messages": "messages", "videos": "videos"}, "tags": OPENAI},
    "mllm_video_audio_demo": {"file_name": "mllm_video_audio_demo.json", "formatting": "sharegpt",
                              "columns": {"messages": "messages", "videos": "videos", "audios": "audios"}, "tags": OPENAI},
    "dpo_en_demo": {"file_name": "dpo_en_demo.json", "ranking": True, "formatting": "sharegpt",
                    "columns": {"messages": "conversations", "chosen": "chosen", "rejected": "rejected"}},
    "dpo_zh_demo": {"file_name": "dpo_zh_demo.json", "ranking": True, "formatting": "sharegpt",
                    "columns": {"messages": "conversations", "chosen": "chosen", "rejected": "rejected"}},
    "kto_en_demo": {"file_name": "kto_en_demo.json", "formatting": "sharegpt",
                    "columns": {"messages": "messages", "kto_tag": "label"}, "tags": OPENAI},
    "alpaca_en": {"hf_hub_url": "llamafactory/alpaca_en", "ms_hub_url": "llamafactory/alpaca_en"},  # hub-only: not local
    "wiki_demo": {"file_name": "wiki_demo.txt", "columns": {"prompt": "text"}},
    "c4_demo": {"file_name": "c4_demo.jsonl", "columns": {"prompt": "text"}},
}
# which kind of training each local entry feeds
KINDS = {"identity": "sft", "alpaca_en_demo": "sft", "alpaca_zh_demo": "sft", "glaive_toolcall_en_demo": "sft",
         "glaive_toolcall_zh_demo": "sft", "mllm_demo": "sft", "mllm_audio_demo": "sft", "mllm_video_demo": "sft",
         "mllm_video_audio_demo": "sft", "dpo_en_demo": "preference", "dpo_zh_demo": "preference", "kto_en_demo": "kto",
         "wiki_demo": "text", "c4_demo": "text"}


def _alpaca(lang: str) -> list[dict]:
    if lang == "zh":
        return [{"instruction": f"把数字 {i} 写成汉字。", "input": "", "output": f"数字 {i} 写作第{i}号。"} for i in range(4)]
    return [{"instruction": f"Add {i} and {i}.", "input": "Answer with a number.", "output": str(2 * i)} for i in range(4)]


def _toolcall(lang: str) -> list[dict]:
    ask = "明天北京天气如何？" if lang == "zh" else "What is the weather in Paris tomorrow?"
    tools = json.dumps([{"name": "get_weather", "description": "weather forecast",
                         "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}])
    return [{"conversations": [
        {"from": "human", "value": ask},
        {"from": "function_call", "value": json.dumps({"name": "get_weather", "arguments": {"city": "Paris"}})},
        {"from": "observation", "value": json.dumps({"forecast": "sunny", "high": 21})},
        {"from": "gpt", "value": "晴，最高 21 度。" if lang == "zh" else "Sunny, with a high of 21 degrees."}],
        "tools": tools} for _ in range(3)]


def _mllm(media: tuple[str, ...]) -> list[dict]:
    tag = "".join(f"<{m[:-1]}>" for m in media)
    row = {"messages": [{"content": f"{tag}What is shown here?", "role": "user"},
                        {"content": "A red bicycle leaning on a wall.", "role": "assistant"},
                        {"content": "What colour is it?", "role": "user"},
                        {"content": "It is red.", "role": "assistant"}]}
    for m in media:
        row[m] = [f"mllm_demo_data/1.{ {'images': 'jpg', 'audios': 'mp3', 'videos': 'mp4'}[m]}"]
    return [row, row]


def _dpo(lang: str) -> list[dict]:
    q = "写一句关于秋天的话。" if lang == "zh" else "Write one sentence about autumn."
    good = "秋风送来了桂花的香气。" if lang == "zh" else "Autumn paints the hills in red and gold."
    return [{"conversations": [{"from": "human", "value": q}], "chosen": {"from": "gpt", "value": good},
             "rejected": {"from": "gpt", "value": "No."}} for _ in range(3)]


def _kto() -> list[dict]:
    return [{"messages": [{"content": "Name a primary colour.", "role": "user"},
                          {"content": "Blue." if k % 2 else "Banana.", "role": "assistant"}], "label": bool(k % 2)}
            for k in range(4)]


WIKI = ["Rivers carry water from high ground to the sea, shaping valleys as they go.",
        "A lighthouse is a tower with a bright lamp that guides ships at night.",
        "The abacus is a counting frame used for arithmetic long before written numerals spread."]


def write_lf_folder(folder: Path) -> Path:
    """Write the folder (dataset_info.json + one small file per local entry) and return it."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    files = {"identity.json": [{"instruction": "Who are you?", "input": "",
                                "output": "I am {{name}}, an AI assistant developed by {{author}}."}] * 2,
             "alpaca_en_demo.json": _alpaca("en"), "alpaca_zh_demo.json": _alpaca("zh"),
             "glaive_toolcall_en_demo.json": _toolcall("en"), "glaive_toolcall_zh_demo.json": _toolcall("zh"),
             "mllm_demo.json": _mllm(("images",)), "mllm_audio_demo.json": _mllm(("audios",)),
             "mllm_video_demo.json": _mllm(("videos",)), "mllm_video_audio_demo.json": _mllm(("videos", "audios")),
             "dpo_en_demo.json": _dpo("en"), "dpo_zh_demo.json": _dpo("zh"), "kto_en_demo.json": _kto()}
    for name, rows in files.items():
        (folder / name).write_text(json.dumps(rows, ensure_ascii=False, indent=2), encoding="utf-8")
    (folder / "wiki_demo.txt").write_text("\n".join(WIKI) + "\n", encoding="utf-8")
    (folder / "c4_demo.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in WIKI), encoding="utf-8")
    (folder / "dataset_info.json").write_text(json.dumps(INFO, indent=2), encoding="utf-8")
    return folder
