"""Which SDPA kernel the prefix-LM mask gets on a GPU (issue 20, part 2).

The trainer hands SDPA a boolean `[B, 1, S, S]` mask (`llm.masks`). Flash attention takes no arbitrary
mask (only `is_causal`), so such a mask never runs on it: SDPA picks the memory-efficient kernel (or
cuDNN's, where it accepts the mask) instead. These tests pin that down on the GPU: flash refuses the
mask, the memory-efficient kernel takes it and agrees with the fp32 math kernel, and a causal-only call
without a mask does run on flash (the fast path a prefix-free batch could take).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from videopoet.llm.masks import attention_mask
from videopoet.sequence import MASKGIT, PREFIX

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
