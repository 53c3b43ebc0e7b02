"""The studio's faster training paths give the numbers of the paths they replace: per-row attention over a padding-free
pack equals transformers' block-diagonal SDPA, and the labeled LM head equals TRL's fused head (loss, gradients,
metrics), on the tiny model with the real tokenizer."""

from __future__ import annotations

import pytest
import torch

from studio.engine.train import fast_paths


def _pack(tok, texts: list[str]) -> dict:
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    rows = [{"input_ids": tok(t)["input_ids"]} for t in texts]
    batch = DataCollatorForLanguageModeling(pad_token_id=tok.pad_token_id, padding_free=True)(rows)
    return batch


@pytest.fixture
def model_and_batch(tiny_model_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, attn_implementation="sdpa", dtype=torch.float32)
    batch = _pack(tok, ["The quick brown fox jumps over the lazy dog.", "Hello there!", "你好，世界。今天天气很好。" * 3])
    batch["labels"][0, :5] = -100  # a masked prompt
    return model, batch


def test_packed_rows_attend_like_the_block_diagonal_mask(model_and_batch):
    model, batch = model_and_batch
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    inputs["use_cache"] = False  # as in training: with a cache transformers does not detect the packed rows
    with torch.no_grad():
        reference = model(**inputs).logits
        fast_paths.use_packed_attention(model)
        assert model.config._attn_implementation == fast_paths.PACKED
        packed = model(**inputs).logits
    assert torch.allclose(reference, packed, atol=1e-5), (reference - packed).abs().max()
    # and it is not the same as attending across rows: the rows really are separated
    with torch.no_grad():
        across = model(input_ids=batch["input_ids"], use_cache=False).logits
    assert (across - packed).abs().max() > 1e-3


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_row_attention_matmul_backward_gives_sdpas_gradients(dtype):
    """_RowAttention: SDPA's output, and the gradients of SDPA's own backward (causal, 6 query heads over 2 key/value
    heads), within each dtype's rounding; the one-token row and rows over the bound keep SDPA's path."""
    import torch.nn.functional as F

    torch.manual_seed(0)
    q, k, v = (torch.randn(1, h, 37, 16, dtype=dtype, requires_grad=True) for h in (6, 2, 2))
    grad = torch.randn(1, 6, 37, 16, dtype=dtype)
    ref_out = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True, scale=0.3)
    ref = torch.autograd.grad(ref_out, (q, k, v), grad)
    out = fast_paths._RowAttention.apply(q, k, v, 0.3)
    got = torch.autograd.grad(out, (q, k, v), grad)
    assert torch.equal(out, ref_out)
    tol = 1e-5 if dtype == torch.float32 else 2e-2
    for name, a, b in zip("qkv", got, ref):
        assert a.dtype == dtype and a.shape == b.shape, name
        err = ((a.float() - b.float()).abs().max() / b.float().abs().max()).item()
        assert err < tol, (name, err)
    # the causal mask is really applied: the third query's output moves keys 0-2 and no later one
    g_third = torch.zeros_like(grad)
    g_third[:, :, 2] = 1
    gk = torch.autograd.grad(fast_paths._RowAttention.apply(q, k, v, 0.3), k, g_third)[0]
    assert gk[:, :, 3:].abs().max() == 0 and gk[:, :, :3].abs().max() > 0


def test_packed_rows_train_alike_with_either_attention_backward(model_and_batch, monkeypatch):
    """A padding-free pack: loss and a layer's gradient agree between SDPA's backward and the matmul one."""
    model, batch = model_and_batch
    calls = []
    apply = fast_paths._RowAttention.apply
    monkeypatch.setattr(fast_paths._RowAttention, "apply", lambda *a: calls.append(a[0].shape[2]) or apply(*a))
    results = []
    for math_backward in (False, True):
        model.zero_grad()
        fast_paths.use_packed_attention(model, math_backward=math_backward)
        assert model.config._attn_implementation == (fast_paths.PACKED_MATH if math_backward else fast_paths.PACKED)
        loss = model(**batch, use_cache=False).loss
        loss.backward()
        results.append((loss.detach(), model.model.layers[0].self_attn.q_proj.weight.grad.clone()))
    (ref_loss, ref_grad), (loss, grad) = results
    rows = batch["position_ids"].eq(0).sum().item()
    assert len(calls) == rows * model.config.num_hidden_layers  # every row of every layer, and only with math_backward
    assert torch.allclose(ref_loss, loss, atol=1e-6)
    assert torch.allclose(ref_grad, grad, atol=1e-6, rtol=1e-4), (ref_grad - grad).abs().max()
    assert ref_grad.abs().max() > 0


@pytest.mark.parametrize("chunk", [256, 5])  # one slice, and several with a ragged last one
def test_labeled_lm_head_matches_trls_fused_head(model_and_batch, monkeypatch, chunk):
    from trl.trainer.utils import add_fused_lm_head

    monkeypatch.setattr(fast_paths, "CHUNK", chunk)
    model, batch = model_and_batch
    results = []
    for ours in (False, True):
        model.zero_grad()
        add_fused_lm_head(model, outputs=("log_probs", "entropy", "is_top1"))
        if ours:
            assert fast_paths.use_labeled_lm_head(model)
        out = model(**batch, fused_lm_head=True)
        out.loss.backward()
        grad = model.model.layers[0].mlp.up_proj.weight.grad.clone()
        head_grad = model.get_output_embeddings().weight.grad.clone()  # the head's own weight trains too (full)
        results.append((out, grad, head_grad))
    (ref, ref_grad, ref_head), (got, got_grad, got_head) = results
    assert torch.allclose(ref_head, got_head, atol=1e-6, rtol=1e-4)
    assert torch.allclose(ref.loss, got.loss, atol=1e-5) and torch.equal(ref.label_mask, got.label_mask)
    assert torch.allclose(ref.log_probs, got.log_probs, atol=1e-5)
    assert torch.allclose(ref.entropy, got.entropy, atol=1e-4) and torch.equal(ref.is_top1, got.is_top1)
    assert torch.allclose(ref_grad, got_grad, atol=1e-6, rtol=1e-4)
    # the unfused path still gives ordinary logits (generation, evaluation)
    assert model(input_ids=batch["input_ids"]).logits.shape[-1] == model.config.vocab_size


@pytest.mark.parametrize("outputs", [("log_probs",), ("log_probs", "entropy", "mean_logits", "is_top1", "log_sum_sq_probs")])
def test_labeled_log_probs_metrics_equal_the_textbook_formulas(monkeypatch, outputs):
    """Each metric the sliced head computes from one shifted copy of the logits equals its definition on full logits."""
    monkeypatch.setattr(fast_paths, "CHUNK", 7)  # several slices, the last one ragged
    torch.manual_seed(0)
    hidden, weight = torch.randn(30, 16, dtype=torch.float64), torch.randn(50, 16, dtype=torch.float64)
    targets = torch.randint(0, 50, (30,))
    targets[:5] = (hidden[:5] @ weight.T).argmax(-1)  # some positions whose target is the top token
    got = fast_paths.labeled_log_probs(hidden, weight, targets, outputs)
    logits = hidden @ weight.T
    log_p = logits.log_softmax(-1)
    want = {"log_probs": log_p.gather(-1, targets[:, None]).squeeze(-1), "entropy": -(log_p.exp() * log_p).sum(-1),
            "mean_logits": logits.mean(-1), "is_top1": logits.argmax(-1) == targets,
            "log_sum_sq_probs": torch.logsumexp(2 * log_p, -1)}
    assert set(got) == set(outputs)
    for key in outputs:
        if key == "is_top1":
            assert torch.equal(got[key], want[key]) and got[key][:5].all()
        else:
            assert torch.allclose(got[key].double(), want[key], atol=1e-5), key


def _lora_over_bf16(tiny_model_dir):
    """The studio's LoRA layout on CPU: a bfloat16 frozen base, float32 adapters (B made non-zero so they count)."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir, attn_implementation="sdpa", dtype=torch.bfloat16)
    model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules="all-linear"), autocast_adapter_dtype=True)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(std=0.05)
    return model


def test_bf16_adapters_cast_the_adapter_weights_not_the_activations_and_keep_the_numbers(tiny_model_dir, model_and_batch):
    import copy

    _, batch = model_and_batch
    model = _lora_over_bf16(tiny_model_dir)
    fast = copy.deepcopy(model)
    assert fast_paths.use_bf16_adapters(fast)
    seen = {}
    for m in (model, fast):
        lora_a = m.base_model.model.model.layers[1].mlp.down_proj.lora_A["default"]
        lora_a.register_forward_pre_hook(lambda mod, args, m=m: seen.__setitem__(id(m), args[0].dtype))
    losses, grads = [], []
    for m in (model, fast):
        out = m(**batch)
        out.loss.backward()
        losses.append(out.loss.item())
        grads.append(torch.cat([p.grad.flatten() for n, p in m.named_parameters() if p.requires_grad]))
        assert all(p.dtype == torch.float32 and p.grad.dtype == torch.float32
                   for p in m.parameters() if p.requires_grad)  # weights and gradients stay float32
    assert seen[id(model)] == torch.float32 and seen[id(fast)] == torch.bfloat16  # PEFT's casts are gone
    assert abs(losses[0] - losses[1]) < 1e-2 * abs(losses[0])
    cos = torch.nn.functional.cosine_similarity(grads[0], grads[1], dim=0)
    assert cos > 0.99, cos
    assert not torch.equal(grads[0], grads[1])  # it did take the other path


def test_bf16_adapters_leave_other_models_alone(tiny_model_dir, model_and_batch):
    from peft import LoraConfig, get_peft_model

    full, _ = model_and_batch  # float32, no adapters
    assert not fast_paths.use_bf16_adapters(full)
    fp32_lora = get_peft_model(full, LoraConfig(r=4, target_modules="all-linear"))  # a float32 base: nothing to gain
    assert not fast_paths.use_bf16_adapters(fp32_lora)
    assert all(m.cast_input_dtype_enabled for m in fp32_lora.modules() if hasattr(m, "cast_input_dtype_enabled"))
