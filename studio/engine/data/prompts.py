"""Prompt datasets for RL (PPO, GRPO, RLOO): rows that hold a prompt; any answer in them is ignored.

Accepted rows: alpaca (``instruction`` [+ ``input``, ``system``]), ``prompt`` (text, or a list of chat messages), and
``messages`` / ``conversations`` (everything up to the last user turn). The same ``PATH[#NAME][@MAX]`` specs and
``data.max_samples`` / ``data.on_bad_row`` rules as SFT apply; a bad row is reported with its file and row.
"""

from __future__ import annotations

from studio.engine.data.formats import DataError, detect_format, normalize_row, read_raw_rows
from studio.engine.data.load import parse_spec, resolve_files, with_system


def prompt_messages(row: dict) -> list[dict]:
    """One raw row -> the chat messages of its prompt (no assistant answer at the end)."""
    if isinstance(row.get("instruction"), str) and row["instruction"].strip():
        user = row["instruction"] + (f"\n{row['input']}" if isinstance(row.get("input"), str) and row["input"] else "")
        system = row.get("system") if isinstance(row.get("system"), str) else ""
        return ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": user}]
    prompt = row.get("prompt")
    if isinstance(prompt, str) and prompt.strip():
        return [{"role": "user", "content": prompt}]
    if isinstance(prompt, list) and prompt:
        messages = normalize_row({"messages": prompt + [{"role": "assistant", "content": "-"}]}, detect_format(
            {"messages": prompt}))
        return messages[:-1]
    if isinstance(row.get("messages"), list) or isinstance(row.get("conversations"), list):
        messages = normalize_row(_with_answer(row), detect_format(row))
        last_user = max((i for i, m in enumerate(messages) if m["role"] == "user"), default=-1)
        if last_user < 0:
            raise DataError("no user message to use as a prompt")
        return messages[:last_user + 1]
    raise DataError(f"no prompt in this row: expected 'instruction', 'prompt', 'messages' or 'conversations' "
                    f"(columns: {sorted(row)})")


def _with_answer(row: dict) -> dict:
    """normalize_row insists on an assistant turn; a prompt-only conversation gets a placeholder that is cut off again."""
    key = "messages" if isinstance(row.get("messages"), list) else "conversations"
    turns = row[key]
    first = next((t for t in turns if isinstance(t, dict)), {})
    answer = {"role": "assistant", "content": "-"} if "role" in first else {"from": "gpt", "value": "-"}
    return dict(row, **{key: list(turns) + [answer]})


def load_prompts(data_cfg) -> tuple[list[list[dict]], dict]:
    """Every prompt of ``data.datasets`` as chat messages (``data.system`` added), and a small report."""
    prompts, skipped, per_dataset = [], [], []
    for spec in data_cfg.datasets:
        ref = parse_spec(spec)
        cap = min(x for x in (ref.max_rows, data_cfg.max_samples) if x) if (ref.max_rows or data_cfg.max_samples) else 0
        taken = []
        for path, _fmt in resolve_files(ref):
            rows, _ = read_raw_rows(path)
            for i, row in enumerate(rows, start=1):
                try:
                    taken.append(with_system(prompt_messages(row), data_cfg.system))
                except DataError as exc:
                    if data_cfg.on_bad_row != "skip":
                        raise DataError(f"{path}: row {i}: {exc}") from None
                    skipped.append(f"{path}: row {i}: {exc}")
        taken = taken[:cap] if cap else taken
        per_dataset.append({"dataset": spec, "prompts": len(taken)})
        prompts += taken
    if not prompts:
        raise DataError("no prompts: data.datasets holds no usable prompt rows")
    report = {"datasets": per_dataset, "train_rows": len(prompts), "skipped_rows": len(skipped),
              "skipped_examples": skipped[:20]}
    return prompts, report
