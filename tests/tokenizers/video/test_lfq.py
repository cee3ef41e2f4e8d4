"""Lookup-free quantization: id round trip and bit order, straight-through gradient, the factorized
entropy loss (exactness, gradient direction, memory at 2^18 codes) and codebook usage."""

from __future__ import annotations

import math

import pytest
import torch

from videopoet.tokenizers.video.lfq import LFQ, CodebookUsage, LFQConfig, codes_to_ids, ids_to_codes


@pytest.mark.parametrize("bits", [1, 10, 18])
def test_ids_round_trip(bits: int) -> None:
    g = torch.Generator().manual_seed(bits)
    ids = torch.randint(0, 2**bits, (3, 5, 7), generator=g)
    codes = ids_to_codes(ids, bits, dim=1)
    assert codes.shape == (3, bits, 5, 7)
    assert set(codes.unique().tolist()) <= {-1.0, 1.0}
    back = codes_to_ids(codes, dim=1)
    assert back.dtype == torch.int64
    assert torch.equal(back, ids)
    assert torch.equal(ids_to_codes(back, bits, dim=1), codes)


def test_bit_order_and_range() -> None:
    bits = 18
    codes = -torch.ones(bits + 1, bits)
    for k in range(bits):
        codes[k + 1, k] = 1.0  # only channel k positive
    ids = codes_to_ids(codes)
    assert ids.tolist() == [0] + [2**k for k in range(bits)]
    assert int(codes_to_ids(torch.ones(1, bits))) == 2**bits - 1
    assert int(codes_to_ids(torch.zeros(1, bits))) == 0  # zero is not positive: code -1
    with pytest.raises(ValueError, match=r"\[0, 2\^4\)"):
        ids_to_codes(torch.tensor([16]), 4)


def test_quantize_values_and_straight_through_gradient() -> None:
    lfq = LFQ(LFQConfig(bits=6, group_bits=3))
    z = torch.randn(2, 6, 3, 4, requires_grad=True)
    out = lfq(z)
    assert torch.equal(out.quantized.detach(), torch.where(z > 0, 1.0, -1.0))
    assert torch.equal(out.ids, lfq.codes_to_ids(z))
    assert out.ids.shape == (2, 3, 4)
    upstream = torch.randn_like(z)
    (out.quantized * upstream).sum().backward()
    assert torch.equal(z.grad, upstream)


def test_commitment_loss_pulls_latents_to_codes() -> None:
    lfq = LFQ(LFQConfig(bits=4, group_bits=2, entropy_weight=0.0))
    z = torch.tensor([[0.5, -2.0, 1.0, 0.0]]).reshape(1, 4, 1).requires_grad_()
    out = lfq(z)
    # codes: +1, -1, +1, -1 (zero maps to -1)
    expected = ((0.5 - 1) ** 2 + (-2 + 1) ** 2 + 0 + (0 + 1) ** 2) / 4
    assert out.commitment.item() == pytest.approx(expected)
    out.commitment.backward()
    assert z.grad.reshape(-1).tolist() == pytest.approx(
        [2 * (0.5 - 1) / 4, 2 * (-2 + 1) / 4, 0.0, 2 * (0 + 1) / 4]
    )


def _full_softmax_entropies(z: torch.Tensor, config: LFQConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Reference: the unfactorized MAGVIT-v2 entropies over all 2^K codes."""
    codes = ids_to_codes(torch.arange(2**config.bits), config.bits, config.scale, dtype=z.dtype)
    probs = (-(z[:, None] - codes[None]).pow(2).sum(-1) / config.entropy_temperature).softmax(-1)
    per_token = -(probs * probs.clamp_min(1e-30).log()).sum(-1).mean()
    avg = probs.mean(0)
    return per_token, -(avg * avg.clamp_min(1e-30).log()).sum()


def test_factorized_entropy_matches_full_softmax() -> None:
    torch.manual_seed(0)
    z = torch.randn(64, 6, dtype=torch.float64) * 0.02
    exact = LFQ(LFQConfig(bits=6, group_bits=6, entropy_temperature=0.01)).double()
    per_token, codebook = exact.entropy_terms(z)
    ref_per_token, ref_codebook = _full_softmax_entropies(z, exact.config)
    assert per_token.item() == pytest.approx(ref_per_token.item(), rel=1e-9)
    assert codebook.item() == pytest.approx(ref_codebook.item(), rel=1e-9)
    # smaller groups: the per-token entropy is still exact, the codebook entropy an upper bound
    grouped = LFQ(LFQConfig(bits=6, group_bits=2, entropy_temperature=0.01)).double()
    per_token_g, codebook_g = grouped.entropy_terms(z)
    assert per_token_g.item() == pytest.approx(ref_per_token.item(), rel=1e-9)
    assert ref_codebook.item() - 1e-9 <= codebook_g.item() <= 6 * math.log(2) + 1e-9


def test_entropy_loss_sharpens_tokens_and_spreads_codes() -> None:
    torch.manual_seed(0)
    lfq = LFQ(LFQConfig(bits=8, group_bits=4, entropy_weight=1.0, commitment_weight=0.0))
    # collapsed start: every token weakly positive on every bit (uncertain, and all near one code)
    z = (0.004 + 0.002 * torch.randn(256, 8, 1)).requires_grad_()
    opt = torch.optim.Adam([z], lr=2e-3)
    first = lfq(z)
    for _ in range(30):
        out = lfq(z)
        opt.zero_grad()
        out.entropy.backward()
        opt.step()
    last = lfq(z)
    assert last.per_token_entropy < 0.5 * first.per_token_entropy
    assert last.codebook_entropy > first.codebook_entropy + 1.0
    assert last.used_codes > 4 * first.used_codes


def test_entropy_at_2_18_codes_stays_small() -> None:
    """K = 18 on 1280 tokens: no saved tensor grows with 2^K or even 2^9 (a group)."""
    torch.manual_seed(0)
    lfq = LFQ(LFQConfig(bits=18, group_bits=9))
    z = torch.randn(1, 18, 5, 16, 16, requires_grad=True)
    n = z[0, 0].numel()
    biggest = 0

    def pack(t: torch.Tensor) -> torch.Tensor:
        nonlocal biggest
        biggest = max(biggest, t.numel())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = lfq(z)
    out.loss.backward()
    assert biggest <= n * 2**5  # halves of a 9-bit group: 4 and 5 bits
    assert z.grad is not None and torch.isfinite(z.grad).all()
    assert out.ids.shape == (1, 5, 16, 16)
    assert 0 <= out.ids.min() and out.ids.max() < 2**18
    assert 0 < out.codebook_entropy.item() <= 18 * math.log(2)


def test_lfq_in_bf16_autocast_keeps_fp32_losses() -> None:
    lfq = LFQ(LFQConfig(bits=6, group_bits=3))
    z = torch.randn(2, 6, 4, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = lfq(z.bfloat16())
    assert out.loss.dtype == torch.float32 and torch.isfinite(out.loss)
    out.loss.backward()
    assert z.grad is not None


def test_usage_stats() -> None:
    usage = CodebookUsage(2**18)
    assert usage.result()["used"] == 0
    usage.update(torch.tensor([[0, 1], [1, 2**18 - 1]]))
    r = usage.result()
    assert r["used"] == 3 and r["tokens"] == 4
    assert r["usage"] == pytest.approx(3 / 2**18)
    entropy = -(0.25 * math.log(0.25) * 2 + 0.5 * math.log(0.5))
    assert r["perplexity"] == pytest.approx(math.exp(entropy))
    assert r["entropy_bits"] == pytest.approx(1.5)
    usage.update(torch.arange(4))  # accumulates across batches
    assert usage.result()["used"] == 5
    with pytest.raises(ValueError):
        usage.update(torch.tensor([2**18]))
    usage.reset()
    assert usage.result()["tokens"] == 0

    lfq = LFQ(LFQConfig(bits=4, group_bits=2)).eval()
    codes = ids_to_codes(torch.tensor([0, 0, 3, 5]), 4, dim=0).reshape(1, 4, 4)
    out = lfq(codes)
    assert out.used_codes == 3
    assert out.perplexity == pytest.approx(math.exp(-(0.5 * math.log(0.5) + 2 * 0.25 * math.log(0.25))))


def test_config_validation() -> None:
    assert LFQConfig(bits=10, group_bits=4).groups == [4, 4, 2]
    assert LFQConfig(bits=18, group_bits=9).groups == [9, 9]
    with pytest.raises(ValueError, match="group_bits"):
        LFQConfig(bits=24, group_bits=21)
    with pytest.raises(ValueError, match="bits"):
        LFQConfig(bits=0)
    with pytest.raises(ValueError, match="expects 6 channels"):
        LFQ(LFQConfig(bits=6, group_bits=3))(torch.randn(1, 5, 2))


def test_group_entropy_bits_of_the_codes_seen() -> None:
    usage = CodebookUsage(2**10)
    usage.update(torch.arange(16).repeat(50))  # the low 4 bits take every value, the rest never change
    low, mid, top = usage.group_entropy_bits([4, 4, 2])
    assert low == pytest.approx(4.0) and mid == 0 and top == 0
    usage.update(torch.tensor([2**9] * 800))  # the top group's high bit set half the time
    assert usage.group_entropy_bits([4, 4, 2])[2] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="do not split"):
        usage.group_entropy_bits([4, 4])
