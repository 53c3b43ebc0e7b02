"""What every export shares: its errors, the logits check (a saved model must reproduce its source's logits on a few chat
prompts) and the progress reporter. Used by ``merge.py`` (safetensors folders) and ``gguf.py`` (GGUF files).
"""

from __future__ import annotations

from typing import Callable, Sequence

PROMPTS = ("What is the capital of France?", "Write a haiku about the sea.", "Who are you and who made you?",
           "In 2024, 12345 naïve cafés — ok?\n\n  indented line")

ProgressFn = Callable[[float, str], None]


class ExportError(RuntimeError):
    """A problem a user can fix (missing folder, incompatible adapters, occupied output); the message is one line."""


class VerificationError(ExportError):
    """The exported model's logits do not match its source; ``result`` holds the measured numbers."""

    def __init__(self, message: str, result: dict):
        super().__init__(message)
        self.result = result


def verification_inputs(tok, prompts: Sequence[str] = PROMPTS) -> tuple[list[str], list[list[int]]]:
    """The check's texts (each prompt through the chat template when there is one) and their token ids."""
    texts = []
    for prompt in prompts:
        if tok.chat_template:
            texts.append(tok.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                                 add_generation_prompt=True))
        else:
            texts.append(prompt)
    ids = [tok(t, add_special_tokens=not tok.chat_template)["input_ids"] for t in texts]
    return texts, ids


def logits(model, inputs: list[list[int]]) -> list:
    import torch

    model.eval()
    with torch.inference_mode():
        return [model(input_ids=torch.tensor([ids])).logits[0].float() for ids in inputs]


def compare_logits(ref: list, got: list, prompts: Sequence[str] = PROMPTS) -> dict:
    """max |difference|, the reference's largest |logit| (the tolerance's scale) and how often the argmax agrees, overall
    and per prompt (``per_prompt``: prompt, tokens, max_abs_diff, top1_agreement; prompts name the inputs in order)."""
    rows = []
    for i, (r, g) in enumerate(zip(ref, got)):
        rows.append({"prompt": prompts[i] if i < len(prompts) else f"#{i + 1}", "tokens": int(r.shape[0]),
                     "max_abs_diff": float((r - g).abs().max()),
                     "top1_agreement": float((r.argmax(-1) == g.argmax(-1)).float().mean())})
    tokens = sum(row["tokens"] for row in rows)
    agree = sum(row["top1_agreement"] * row["tokens"] for row in rows)
    return {"max_abs_diff": max(row["max_abs_diff"] for row in rows), "logit_scale": max(float(r.abs().max()) for r in ref),
            "top1_agreement": round(agree) / tokens, "tokens": tokens, "per_prompt": rows}


def judge(cmp: dict, rel_tol: float, reference: str, prompts: int) -> dict:
    tol = rel_tol * max(1.0, cmp["logit_scale"])
    verification = dict(cmp, tolerance=tol, reference=reference, prompts=prompts)
    return {"ok": cmp["max_abs_diff"] <= tol, "max_abs_diff": cmp["max_abs_diff"], "tolerance": tol,
            "top1_agreement": cmp["top1_agreement"], "verification": verification}


class Progress:
    """Calls ``fn(fraction, message)`` if given; ``sub(lo, hi)`` maps a nested step's 0..1 onto lo..hi."""

    def __init__(self, fn: ProgressFn | None, lo: float = 0.0, hi: float = 1.0):
        self.fn, self.lo, self.hi = fn, lo, hi

    def __call__(self, fraction: float, message: str) -> None:
        if self.fn is not None:
            self.fn(self.lo + (self.hi - self.lo) * fraction, message)

    def sub(self, lo: float, hi: float) -> "Progress":
        return Progress(self.fn, self.lo + (self.hi - self.lo) * lo, self.lo + (self.hi - self.lo) * hi)
