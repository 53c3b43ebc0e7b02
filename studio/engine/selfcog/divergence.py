"""How far the tuned model's next-token distributions moved from the base's, on the base's own answers.

``answer_kl(chat, conversations, answers)``: each conversation with the base's greedy answer appended is read once by
each side (teacher forcing: one forward pass, no generation); at every answer token both full next-token distributions are
compared. With a LoRA adapter both sides are the one model in memory, the adapter switched off for the base
(``ChatModel.variant``). Each side renders the prompt with its own chat template, as the chat does; the answer tokens are
the same on both sides. KL moves before greedy answers flip, so it shows a drift that retention cannot see yet.

- ``kl``: KL(tuned ‖ base), the divergence of the tuned model from the base, in nats per answer token;
- ``kl_reverse``: KL(base ‖ tuned), the self-distillation loss on these answers less the base's own entropy.
"""

from __future__ import annotations

KL_BATCH = 16  # sequences per forward pass: 16 x ~100 positions x a 49k vocabulary of float32 logits is ~300 MB


def answer_kl(chat, conversations: list[list[dict]], answers: list[str], batch_size: int = KL_BATCH) -> list[dict]:
    """Per answer: ``{"tokens": n, "kl": mean KL(tuned‖base), "kl_reverse": mean KL(base‖tuned)}`` (None for no tokens)."""
    import torch

    answer_ids = [chat.tokenizer(a, add_special_tokens=False)["input_ids"] if a else [] for a in answers]
    out: list[dict] = [{"tokens": 0, "kl": None, "kl_reverse": None} for _ in answers]
    with chat.lock, torch.inference_mode():
        for start in range(0, len(answers), batch_size):
            idx = [i for i in range(start, min(start + batch_size, len(answers))) if answer_ids[i]]
            if not idx:
                continue
            logp = {}
            for tuned in (False, True):
                with chat.variant(tuned) as (model, tok):
                    prompts = [tok(tok.apply_chat_template(conversations[i], add_generation_prompt=True, tokenize=False),
                                   add_special_tokens=False)["input_ids"] for i in idx]
                    logp[tuned] = _answer_logprobs(model, prompts, [answer_ids[i] for i in idx], tok.pad_token_id or 0)
            for k, i in enumerate(idx):
                lt, lb = logp[True][k], logp[False][k]
                out[i] = {"tokens": len(answer_ids[i]), "kl": float((lt.exp() * (lt - lb)).sum(-1).mean()),
                          "kl_reverse": float((lb.exp() * (lb - lt)).sum(-1).mean())}
    return out


def _answer_logprobs(model, prompts: list[list[int]], answers: list[list[int]], pad_id: int) -> list:
    """Float32 log-probabilities of the next token at each answer position, one [answer_len, vocab] tensor per row."""
    import torch

    seqs = [p + a for p, a in zip(prompts, answers)]
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for row, s in enumerate(seqs):  # right padding: the pads come after every position that is read
        ids[row, : len(s)] = torch.tensor(s)
        mask[row, : len(s)] = 1
    # the logits at position t predict token t + 1: the answer's tokens are predicted from len(p) - 1 on. Only the
    # positions from the shortest prompt's end on go through the LM head (a 49k-word head over prompt positions is work
    # thrown away); the model's own forward does it (logits_to_keep), so any scaling or capping of its logits still applies
    first = min(len(p) for p in prompts) - 1 if _keeps_logits(model) else 0
    kwargs = {"logits_to_keep": torch.arange(first, width)} if first else {}
    logits = model(input_ids=ids, attention_mask=mask, **kwargs).logits
    out = []
    for row, (p, a) in enumerate(zip(prompts, answers)):
        out.append(torch.log_softmax(logits[row, len(p) - 1 - first: len(p) + len(a) - 1 - first].float(), dim=-1))
    return out


def _keeps_logits(model) -> bool:
    """Whether the causal LM's forward takes ``logits_to_keep`` (transformers' models do; a custom one may not)."""
    import inspect

    causal = model.get_base_model() if hasattr(model, "get_base_model") else model
    return "logits_to_keep" in inspect.signature(causal.forward).parameters


def mean_kl(results: list[dict], key: str = "kl") -> float | None:
    """Per-token mean over all answers (each answer weighted by its tokens)."""
    tokens = sum(r["tokens"] for r in results if r.get(key) is not None)
    if not tokens:
        return None
    return sum(r[key] * r["tokens"] for r in results if r.get(key) is not None) / tokens
