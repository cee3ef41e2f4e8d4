"""Lookup-free quantization (LFQ, MAGVIT-v2): K latent channels quantized by sign, token id = the K bits.

There is no codebook to learn or look up: channel k of a latent vector becomes `+scale` when it is
positive and `-scale` otherwise, and the token id is the integer whose bit k is 1 exactly when channel k
is positive (bit 0 = channel 0, the least significant bit). Gradients pass straight through the sign.

The MAGVIT-v2 entropy loss (mean per-token entropy, pushed down, minus the entropy of the batch-averaged
code distribution, pushed up) would need a `[N, 2^K]` softmax over all codes: 5 GB at K = 18 for 5120
tokens. Here no tensor grows with 2^K:

- the per-token distribution `softmax(-||z - c||^2 / T)` over all 2^K codes factorizes exactly over the
  bits (the distance is a sum over channels), so the per-token entropy is the sum of K binary entropies;
- the codebook entropy is taken over factorized groups of `group_bits` bits and summed: for each group,
  the batch average of its softmax over 2^g codes. That softmax factorizes over bits too, so the group is
  split into halves a and b with p_n(c) = p_n(c_a) p_n(c_b), and the average is the `[2^ga, 2^gb]`
  matrix `P_a^T P_b / N`: no `[N, 2^g]` tensor either. The group sum bounds the joint entropy from
  above (it ignores dependence between groups); larger groups make it tighter and cost 2^g per group.

At K = 18 with groups of 9 bits the largest tensors are `[N, 32]`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class LFQConfig:
    """Lookup-free quantizer settings. Loss weights are the quantizer's share of the tokenizer loss."""

    bits: int = 18  # K: latent channels, 2^K codes
    group_bits: int = 9  # bits per factorized entropy group; the last group takes the remainder
    scale: float = 1.0  # codes are +-scale
    entropy_temperature: float = 0.01
    commitment_weight: float = 0.25
    entropy_weight: float = 0.1
    codebook_entropy_weight: float = 1.0  # MAGVIT-v2's gamma: weight of the codebook entropy term

    def __post_init__(self) -> None:
        if not 1 <= self.bits <= 62:
            raise ValueError(f"LFQ bits must be in [1, 62] (ids are int64), got {self.bits}")
        if not 1 <= self.group_bits <= 20:
            raise ValueError(
                f"LFQ group_bits must be in [1, 20] (a group costs 2^(group_bits/2) per token), got {self.group_bits}"
            )
        if self.scale <= 0 or self.entropy_temperature <= 0:
            raise ValueError("LFQ scale and entropy_temperature must be positive")
        if min(self.commitment_weight, self.entropy_weight, self.codebook_entropy_weight) < 0:
            raise ValueError("LFQ loss weights must be non-negative")

    @property
    def codebook_size(self) -> int:
        return 2**self.bits

    @property
    def groups(self) -> list[int]:
        """Bits in each entropy group, e.g. K=18, g=9 -> [9, 9]; K=10, g=4 -> [4, 4, 2]."""
        full, rest = divmod(self.bits, self.group_bits)
        return [self.group_bits] * full + ([rest] if rest else [])


@dataclass
class LFQOutput:
    """What `LFQ.forward` returns. Losses are scalars; `loss` is the weighted sum the tokenizer adds."""

    quantized: torch.Tensor  # like the input, values +-scale, straight-through gradient to the input
    ids: torch.Tensor  # int64, the input's shape without the channel dim
    loss: torch.Tensor  # commitment_weight * commitment + entropy_weight * entropy
    commitment: torch.Tensor
    entropy: torch.Tensor  # per_token_entropy - codebook_entropy_weight * codebook_entropy
    per_token_entropy: torch.Tensor  # nats, mean over tokens (exact)
    codebook_entropy: torch.Tensor  # nats, sum over groups of the batch-average's entropy
    used_codes: int  # distinct ids in this batch
    perplexity: float  # exp(entropy of this batch's id histogram)


def _bit_weights(bits: int, device: torch.device) -> torch.Tensor:
    return torch.pow(2, torch.arange(bits, device=device, dtype=torch.int64))


def codes_to_ids(codes: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Ids of sign codes along `dim`: bit k of the id is 1 when channel k is positive. Returns int64."""
    codes = codes.movedim(dim, -1)
    weights = _bit_weights(codes.shape[-1], codes.device)
    return ((codes > 0).to(torch.int64) * weights).sum(-1)


def _unpack(ids: torch.Tensor, bits: int, scale: float, dtype: torch.dtype) -> torch.Tensor:
    on = (ids.to(torch.int64).unsqueeze(-1) >> torch.arange(bits, device=ids.device)) & 1
    return (on.to(dtype) * 2 - 1) * scale


def ids_to_codes(
    ids: torch.Tensor, bits: int, scale: float = 1.0, dim: int = -1, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """Codes (+-scale) of int ids in [0, 2^bits), the K channels placed at `dim` of the result."""
    if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= 2**bits):
        raise ValueError(f"ids must be in [0, 2^{bits}), got values in [{int(ids.min())}, {int(ids.max())}]")
    return _unpack(ids, bits, scale, dtype).movedim(-1, dim)


def _exp(log_p: torch.Tensor) -> torch.Tensor:
    # exp below -80 would give float32 denormals, 10-100x slower on x86; those probabilities are ~0 anyway
    return log_p.clamp_min(-80.0).exp()


def _entropy(probs: torch.Tensor, log_probs: torch.Tensor) -> torch.Tensor:
    return -(probs * log_probs).sum(-1)


class LFQ(nn.Module):
    """Sign quantizer over channel dim 1 of `[B, K, ...]` latents (the layout conv nets produce)."""

    def __init__(self, config: LFQConfig) -> None:
        super().__init__()
        self.config = config
        self.halves: list[list[tuple[int, int]]] = []  # per group: (first bit, bits) of halves a and b
        start = 0
        for g in config.groups:
            self.halves.append([(start, g // 2), (start + g // 2, g - g // 2)])
            start += g
        for h in sorted({size for group in self.halves for _, size in group}):
            # row c: [bits of c, 1 - bits of c] as 0/1, so that [log p(on), log p(off)] @ row.T sums the
            # log-probabilities of code c's bits (no cancellation between large terms)
            on = _unpack(torch.arange(2**h), h, 0.5, torch.float32) + 0.5
            self.register_buffer(f"select_{h}", torch.cat([on, 1 - on], dim=1), persistent=False)

    @property
    def bits(self) -> int:
        return self.config.bits

    def codes_to_ids(self, codes: torch.Tensor) -> torch.Tensor:
        """`[B, K, ...]` codes -> `[B, ...]` int64 ids."""
        return codes_to_ids(codes, dim=1)

    def ids_to_codes(self, ids: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """`[B, ...]` int ids -> `[B, K, ...]` codes of +-scale."""
        return ids_to_codes(ids, self.config.bits, self.config.scale, dim=1, dtype=dtype)

    def quantize(self, z: torch.Tensor) -> torch.Tensor:
        """Sign of `z` as +-scale, straight-through: forward is the code, backward the identity."""
        q = torch.where(z > 0, self.config.scale, -self.config.scale).to(z.dtype)
        return z + (q - z).detach()

    def entropy_terms(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean per-token entropy, factorized codebook entropy) in nats of `[N, K]` latents."""
        cfg = self.config
        # -||z - c||^2 / T differs from 2 <z, c> / T by a per-token constant, which softmax ignores,
        # so each bit is on with probability sigmoid(4 * scale * z / T)
        bit_logits = 4 * cfg.scale * z / cfg.entropy_temperature
        log_on, log_off = F.logsigmoid(bit_logits), F.logsigmoid(-bit_logits)
        per_token = -(_exp(log_on) * log_on + _exp(log_off) * log_off).sum(-1).mean()

        def half_probs(start: int, size: int) -> torch.Tensor:  # [N, 2^size]: p_n of each code of the half
            logs = torch.cat([log_on[:, start : start + size], log_off[:, start : start + size]], dim=1)
            return _exp(logs @ getattr(self, f"select_{size}").t())

        codebook = z.new_zeros(())
        for (a, size_a), (b, size_b) in self.halves:
            avg = (half_probs(a, size_a).t() @ half_probs(b, size_b)).flatten() / z.shape[0]
            codebook = codebook + _entropy(avg, torch.log(avg.clamp_min(1e-30)))
        return per_token, codebook

    def forward(self, z: torch.Tensor) -> LFQOutput:
        """Quantize `[B, K, ...]` latents; losses and statistics in fp32 whatever the autocast dtype.

        The entropy terms are returned apart as well as in `loss`, so a training loop that anneals their
        weight can combine `commitment` and `entropy` itself."""
        cfg = self.config
        if z.shape[1] != cfg.bits:
            raise ValueError(f"LFQ expects {cfg.bits} channels at dim 1, got shape {tuple(z.shape)}")
        with torch.autocast(z.device.type, enabled=False):
            z = z.float()
            quantized = self.quantize(z)
            ids = self.codes_to_ids(z)
            commitment = F.mse_loss(z, quantized.detach())
            flat = z.movedim(1, -1).reshape(-1, cfg.bits)
            per_token, codebook = self.entropy_terms(flat)
            entropy = per_token - cfg.codebook_entropy_weight * codebook
            loss = cfg.commitment_weight * commitment + cfg.entropy_weight * entropy
            with torch.no_grad():
                counts = torch.unique(ids, return_counts=True)[1].double()
                p = counts / counts.sum()
                perplexity = float(torch.exp(-(p * p.log()).sum()))
        return LFQOutput(
            quantized=quantized,
            ids=ids,
            loss=loss,
            commitment=commitment,
            entropy=entropy,
            per_token_entropy=per_token,
            codebook_entropy=codebook,
            used_codes=int(counts.numel()),
            perplexity=perplexity,
        )


class CodebookUsage:
    """Accumulates how often each of 2^K ids occurs (one int64 count per code: 2 MB at K = 18)."""

    def __init__(self, codebook_size: int) -> None:
        self.codebook_size = codebook_size
        self.counts = torch.zeros(codebook_size, dtype=torch.int64)

    def update(self, ids: torch.Tensor) -> None:
        ids = ids.detach().reshape(-1).to("cpu", torch.int64)
        if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= self.codebook_size):
            raise ValueError(f"ids out of [0, {self.codebook_size})")
        self.counts += torch.bincount(ids, minlength=self.codebook_size)

    def reset(self) -> None:
        self.counts.zero_()

    def group_entropy_bits(self, groups: list[int]) -> list[float]:
        """Entropy in bits of each group's sub-code over the ids counted (group j: the next `groups[j]`
        bits of the id, low bits first, as `LFQConfig.groups` splits them); group j can reach
        `groups[j]` bits, and their sum bounds the entropy of the whole id from above."""
        if sum(groups) != self.codebook_size.bit_length() - 1:
            raise ValueError(f"groups {groups} do not split {self.codebook_size.bit_length() - 1} bits")
        ids, total, out, offset = torch.arange(self.codebook_size), float(self.counts.sum()), [], 0
        for bits in groups:
            sub = torch.bincount((ids >> offset) & ((1 << bits) - 1), weights=self.counts.double(), minlength=1 << bits)
            p = sub[sub > 0] / total if total else sub[:0]
            out.append(float(-(p * p.log2()).sum()))
            offset += bits
        return out

    def result(self) -> dict[str, float]:
        """used (distinct codes seen), usage (their share of all codes), perplexity (exp entropy of the
        id histogram), entropy_bits (log2 perplexity, at most K) and tokens counted."""
        total = int(self.counts.sum())
        if total == 0:
            return {"used": 0.0, "usage": 0.0, "perplexity": 0.0, "entropy_bits": 0.0, "tokens": 0.0}
        seen = self.counts[self.counts > 0].double()
        p = seen / total
        entropy = float(-(p * p.log()).sum())
        return {
            "used": float(seen.numel()),
            "usage": seen.numel() / self.codebook_size,
            "perplexity": math.exp(entropy),
            "entropy_bits": entropy / math.log(2),
            "tokens": float(total),
        }
