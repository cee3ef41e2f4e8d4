"""Which SDPA kernel the prefix-LM mask gets on a GPU (issue 20, part 2).

The trainer hands SDPA a boolean `[B, 1, S, S]` mask (`llm.masks`). Flash attention takes no arbitrary
mask (only `is_causal`), so such a mask never runs on it: SDPA picks the memory-efficient kernel (or
cuDNN's, where it accepts the mask) instead. These tests pin that down on the GPU: flash refuses the
mask, the memory-efficient kernel takes it and agrees with the fp32 math kernel, and a causal-only call
without a mask does run on flash (the fast path a prefix-free batch could take). And the model through
FlexAttention block masks (`llm_train.attention=flex`): the same logits, losses and gradients as the dense
SDPA path for every mode, padding and packed rows (the CPU checks the forward only: no flex backward there).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from videopoet.llm.masks import attention_inputs, attention_mask
from videopoet.sequence import CAUSAL, MASKGIT, PREFIX

pytestmark = pytest.mark.gpu


def qkv_and_mask(device: torch.device, seq: int = 256) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 4, seq, 64, generator=g).to(device, torch.bfloat16) for _ in range(3))
    mask = attention_mask(seq, torch.tensor([40, 64]), torch.tensor([seq, seq]), torch.tensor([PREFIX, MASKGIT])).to(device)
    return q, k, v, mask


def test_boolean_prefix_mask_runs_on_the_efficient_kernel_not_flash(gpu: torch.device) -> None:
    from torch.nn.attention import SDPBackend, sdpa_kernel

    if gpu.type != "cuda":
        pytest.skip("the flash and memory-efficient kernels are CUDA's (nothing to check on the CPU stand-in)")
    q, k, v, mask = qkv_and_mask(gpu)
    ref = F.scaled_dot_product_attention(q.float(), k.float(), v.float(), attn_mask=mask)
    with sdpa_kernel(SDPBackend.EFFICIENT_ATTENTION):
        eff = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    assert (eff.float() - ref).abs().max() < 3e-2  # bf16 against fp32
    with sdpa_kernel(SDPBackend.FLASH_ATTENTION), pytest.raises(RuntimeError):
        F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    with sdpa_kernel(SDPBackend.FLASH_ATTENTION):  # no mask, causal: flash takes it
        flash = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    causal = attention_mask(q.shape[2], torch.zeros(2, dtype=torch.long), torch.full((2,), q.shape[2]), torch.tensor([PREFIX, PREFIX])).to(gpu)
    with sdpa_kernel(SDPBackend.EFFICIENT_ATTENTION):
        same = F.scaled_dot_product_attention(q, k, v, attn_mask=causal)
    assert (flash.float() - same.float()).abs().max() < 3e-2


def packed_rows(seq: int) -> dict[str, torch.Tensor]:
    """A packed batch of `seq`-token rows: one document per mode, padding, and rows of mixed documents."""
    import numpy as np

    from videopoet.data.packing import collate_packed
    from videopoet.data.tasks import IGNORE_INDEX, TaskSequence

    rng = np.random.default_rng(0)
    rows = [[(seq, 0, CAUSAL)], [(seq - 30, 70, PREFIX)], [(seq - 50, 90, MASKGIT)],
            [(100, 40, PREFIX), (90, 30, MASKGIT), (seq - 200, 0, CAUSAL)]]  # fmt: skip

    def sequence(n: int, p: int, mode: int) -> TaskSequence:
        ids = rng.integers(0, 1000, n)
        labels = np.where((np.arange(n) >= max(p, 1)) & ((mode != MASKGIT) | (rng.random(n) < 0.5)), ids, IGNORE_INDEX)
        return TaskSequence(ids, labels, p, [(p, n)], mode, "text_to_video")

    return collate_packed([[sequence(*doc) for doc in row] for row in rows], pad_id=0)


def test_flex_attention_model_matches_dense_sdpa_with_gradients(gpu: torch.device, strict_fp32) -> None:
    from videopoet.llm.masks import MaskLayout
    from videopoet.llm.model import LLMConfig, build_model, token_losses
    from videopoet.vocab import SharedVocab

    if gpu.type != "cuda":
        pytest.skip("FlexAttention has no backward on the CPU (torch 2.11); tests/llm/test_attention.py checks its forward")
    torch.manual_seed(0)
    vocab = SharedVocab(text_size=1000, video_bits=8, audio_levels=2, audio_codebook_size=64)
    config = LLMConfig(hidden_size=256, num_layers=2, num_heads=4, intermediate_size=512, max_position_embeddings=512)
    model = build_model(config, vocab).to(gpu).train()
    batch = packed_rows(256)
    real = (MaskLayout.of_batch(batch).documents >= 0).to(gpu)
    results = {}
    for kind in ("dense", "flex"):
        model.set_attn_implementation("flex_attention" if kind == "flex" else "sdpa")
        model.zero_grad()
        inputs = attention_inputs(batch, kind, gpu)
        logits = model(input_ids=batch["input_ids"].to(gpu), **inputs).logits
        losses = token_losses(logits, batch["labels"].to(gpu), batch["modes"].to(gpu))[0]
        losses.sum().backward()
        results[kind] = (logits[real], losses, [p.grad.clone() for p in model.parameters()])
    (dl, dloss, dgrad), (fl, floss, fgrad) = results["dense"], results["flex"]
    torch.testing.assert_close(fl, dl, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(floss, dloss, rtol=1e-4, atol=1e-4)
    for a, b in zip(fgrad, dgrad, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-5)
