"""Residual vector quantization (RVQ) with EMA codebooks, as in SoundStream.

Level 0 quantizes the encoder's latent vector, level l quantizes what levels 0..l-1 left over, and the
decoded latent is the sum of the chosen codes, so the first k levels alone give a coarser (lower bitrate)
reconstruction. Codebooks are not trained by gradients: each one follows an exponential moving average
of the vectors assigned to it (cluster sizes and sums, Laplace-smoothed so no code divides by zero),
starts from k-means on the first training batch, and codes that stop being used (EMA cluster size below
a threshold) restart from random vectors of the current batch. Quantizer dropout trains each sample with
a random number of levels 1..L so one model serves every bitrate; gradients reach the encoder through a
straight-through estimator plus a commitment loss.

Codebooks, EMA statistics and the `initialized` flag are buffers, so they are in the state_dict and a
checkpoint restores them. Quantization always runs in float32, also under bf16 autocast. In eval mode
(and in `encode`/`decode`, in any mode) nothing is updated and the result is deterministic.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.distributed as dist
from torch import nn

from videopoet.errors import UserError


class CodesError(UserError):
    """Audio codes that do not fit the quantizer: wrong shape, too many levels or ids out of range."""


@dataclass
class RVQConfig:
    """Shape and update rule of a residual vector quantizer."""

    dim: int = 128  # latent vector size
    levels: int = 4  # L: number of residual levels
    codebook_size: int = 1024  # C: codes per level
    ema_decay: float = 0.99  # codebook EMA decay per training step
    laplace_eps: float = 1e-5  # Laplace smoothing of the EMA cluster sizes
    dead_code_threshold: float = 1.0  # restart a code whose EMA cluster size (vectors/batch) falls below
    quantizer_dropout: float = 0.5  # probability that a training sample uses a random 1..L levels
    kmeans_iters: int = 10  # Lloyd iterations of the first-batch initialization (0: random batch vectors)

    def __post_init__(self) -> None:
        if self.dim < 1 or self.levels < 1:
            raise ValueError(
                f"RVQ dim and levels must be at least 1, got dim={self.dim}, levels={self.levels}"
            )
        if self.codebook_size < 2:
            raise ValueError(f"codebook_size must be at least 2, got {self.codebook_size}")
        if not 0 < self.ema_decay < 1:
            raise ValueError(f"ema_decay must be in (0, 1), got {self.ema_decay}")
        if self.laplace_eps <= 0:
            raise ValueError(f"laplace_eps must be positive, got {self.laplace_eps}")
        if self.dead_code_threshold < 0:
            raise ValueError(f"dead_code_threshold must be >= 0, got {self.dead_code_threshold}")
        if not 0 <= self.quantizer_dropout <= 1:
            raise ValueError(f"quantizer_dropout must be in [0, 1], got {self.quantizer_dropout}")
        if self.kmeans_iters < 0:
            raise ValueError(f"kmeans_iters must be >= 0, got {self.kmeans_iters}")


@dataclass
class RVQOutput:
    """What a forward pass of the quantizer gives."""

    quantized: torch.Tensor  # [B, D, F] float32; straight-through: its gradient flows to the input
    codes: torch.Tensor  # [B, levels computed, F] int64 (all L levels in training)
    n_levels: torch.Tensor  # [B] int64: levels summed into `quantized` for each sample
    commitment_loss: torch.Tensor  # scalar: mean squared distance of each used residual to its code
    stats: dict[str, torch.Tensor] = field(default_factory=dict)  # detached scalars to log


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def _all_reduce_sum(*tensors: torch.Tensor) -> None:
    if _distributed():
        for t in tensors:
            dist.all_reduce(t)


def _broadcast(*tensors: torch.Tensor) -> None:
    """Rank 0's values everywhere, so every rank keeps identical codebooks."""
    if _distributed():
        for t in tensors:
            dist.broadcast(t, src=0)


def nearest_code(x: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    """Index of the nearest code (squared Euclidean distance; the first one on ties) for each row of x."""
    # ||x - c||^2 = ||x||^2 - 2 x.c + ||c||^2; ||x||^2 does not change the argmin.
    dist_ = codebook.pow(2).sum(1) - 2.0 * (x @ codebook.t())
    return dist_.argmin(dim=1)


def kmeans(x: torch.Tensor, k: int, iters: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Lloyd's k-means on the rows of x [N, D]: centroids [k, D] and cluster sizes [k] (float).

    Seeded by k-means++ (each next seed a row drawn with probability proportional to its squared distance
    to the nearest seed so far: separated clusters all get a seed); an empty cluster keeps its centroid."""
    centroids = _kmeans_pp_seeds(x, k)
    counts = torch.zeros(k, device=x.device)
    for _ in range(max(iters, 1)):
        idx = nearest_code(x, centroids)
        counts = torch.bincount(idx, minlength=k).to(x.dtype)
        if iters == 0:
            break
        sums = torch.zeros_like(centroids).index_add_(0, idx, x)
        filled = counts > 0
        centroids[filled] = sums[filled] / counts[filled, None]
    return centroids, counts


def _kmeans_pp_seeds(x: torch.Tensor, k: int) -> torch.Tensor:
    """k seeds from the rows of x by k-means++ (uniform draws once every row is a seed)."""
    n = x.shape[0]
    seeds = torch.empty(k, x.shape[1], device=x.device, dtype=x.dtype)
    x2 = x.pow(2).sum(1)

    def d2(c: torch.Tensor) -> torch.Tensor:  # squared distances to c; a matrix-vector product is fast
        return (x2 - 2.0 * (x @ c) + c.pow(2).sum()).clamp_min(0)

    seeds[0] = x[torch.randint(0, n, (1,), device=x.device)[0]]
    min_d2 = d2(seeds[0])
    for i in range(1, k):
        total = min_d2.sum()
        if total > 0:
            pick = torch.multinomial(min_d2 / total, 1)
        else:
            pick = torch.randint(0, n, (1,), device=x.device)
        seeds[i] = x[pick[0]]
        min_d2 = torch.minimum(min_d2, d2(seeds[i]))
    return seeds


def codebook_usage(codes: torch.Tensor, codebook_size: int) -> list[dict[str, float]]:
    """Per level: the fraction of the C codes used and the perplexity (exp of the entropy of the code
    histogram; C when all codes are equally used, 1 when one code is) over codes [..., L, F]."""
    codes = torch.as_tensor(codes)
    levels = codes.shape[-2]
    flat = codes.transpose(-2, -1).reshape(-1, levels)
    out = []
    for level in range(levels):
        counts = torch.bincount(flat[:, level].long(), minlength=codebook_size).double()
        used, perplexity = _usage_tensors(counts)
        out.append({"fraction_used": float(used), "perplexity": float(perplexity)})
    return out


class ResidualVQ(nn.Module):
    """L levels of C EMA-updated codes; see the module docstring for the update rules."""

    def __init__(self, config: RVQConfig) -> None:
        super().__init__()
        self.config = config
        L, C, D = config.levels, config.codebook_size, config.dim
        self.register_buffer("codebooks", torch.randn(L, C, D))
        self.register_buffer("cluster_size", torch.zeros(L, C))
        self.register_buffer("embed_sum", torch.zeros(L, C, D))
        self.register_buffer("initialized", torch.tensor(False))

    @property
    def levels(self) -> int:
        return self.config.levels

    @property
    def codebook_size(self) -> int:
        return self.config.codebook_size

    def _check_levels(self, n_levels: int | None) -> int:
        if n_levels is None:
            return self.levels
        if not 1 <= n_levels <= self.levels:
            raise CodesError(f"n_levels must be in 1..{self.levels}, got {n_levels}")
        return int(n_levels)

    @staticmethod
    def _rows(z: torch.Tensor) -> torch.Tensor:
        """[B, D, F] -> [B*F, D] float32."""
        if z.dim() != 3:
            raise ValueError(f"RVQ input must be [B, D, F], got shape {tuple(z.shape)}")
        return z.float().transpose(1, 2).reshape(-1, z.shape[1])

    # ----- training -----

    def forward(self, z: torch.Tensor, n_levels: int | None = None) -> RVQOutput:
        """Quantize latents z [B, D, F]. In training mode: k-means init on the first call, quantizer
        dropout (unless `n_levels` is given), and EMA/dead-code updates of every level's codebook."""
        if z.shape[1] != self.config.dim:
            raise ValueError(f"RVQ expects {self.config.dim} latent channels, got {z.shape[1]}")
        B, D, F = z.shape
        fixed = self._check_levels(n_levels)
        with torch.autocast(z.device.type, enabled=False):
            x = self._rows(z)
            if self.training and not bool(self.initialized):
                self.init_codebooks(x.detach())
            if self.training and n_levels is None and self.config.quantizer_dropout > 0:
                drop = torch.rand(B, device=z.device) < self.config.quantizer_dropout
                random_n = torch.randint(1, self.levels + 1, (B,), device=z.device)
                per_sample = torch.where(drop, random_n, torch.full_like(random_n, self.levels))
            else:
                per_sample = torch.full((B,), fixed, dtype=torch.long, device=z.device)
            per_row = per_sample.repeat_interleave(F)  # [B*F], rows are sample-major
            # Training computes every level (so each codebook sees data); inference only those it needs.
            computed = self.levels if self.training else fixed
            residual = x
            quantized = torch.zeros_like(x)
            commitment = x.new_zeros(())
            codes, stats = [], {}
            for level in range(computed):
                idx = nearest_code(residual.detach(), self.codebooks[level])
                q = self.codebooks[level][idx]  # indexing copies: later in-place updates do not touch q
                used = (per_row > level).to(x.dtype)[:, None]
                commitment = (
                    commitment + ((residual - q).pow(2).mean(1, keepdim=True) * used).sum() / x.shape[0]
                )
                quantized = quantized + q * used
                if self.training:
                    counts = self._ema_update(level, residual.detach(), idx)
                else:
                    counts = torch.bincount(idx, minlength=self.codebook_size).float()
                use = _usage_tensors(counts)
                stats[f"usage/level{level}"] = use[0]
                stats[f"perplexity/level{level}"] = use[1]
                codes.append(idx.view(B, F))
                residual = residual - q
            stats["levels_mean"] = per_sample.float().mean()
            out = x + (quantized - x).detach()  # straight-through estimator
        return RVQOutput(
            quantized=out.view(B, F, D).transpose(1, 2),
            codes=torch.stack(codes, dim=1),
            n_levels=per_sample,
            commitment_loss=commitment,
            stats=stats,
        )

    @torch.no_grad()
    def init_codebooks(self, x: torch.Tensor) -> None:
        """Initialise every level by k-means on the residuals of the latent vectors x [N, D] (the first
        training batch's, unless the trainer gives more)."""
        residual = x.clone()
        for level in range(self.levels):
            centroids, counts = kmeans(residual, self.codebook_size, self.config.kmeans_iters)
            _broadcast(centroids, counts)
            self.codebooks[level].copy_(centroids)
            self.cluster_size[level].copy_(counts)
            self.embed_sum[level].copy_(centroids * counts[:, None])
            residual -= centroids[nearest_code(residual, centroids)]
        self.initialized.fill_(True)

    @torch.no_grad()
    def _ema_update(self, level: int, x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """Move codebook `level` toward the mean of its assigned vectors; restart dead codes. Returns
        this batch's code counts."""
        cfg = self.config
        C = cfg.codebook_size
        counts = torch.bincount(idx, minlength=C).to(x.dtype)
        sums = torch.zeros(C, x.shape[1], device=x.device, dtype=x.dtype).index_add_(0, idx, x)
        _all_reduce_sum(counts, sums)
        size, embed_sum = self.cluster_size[level], self.embed_sum[level]
        size.mul_(cfg.ema_decay).add_(counts, alpha=1 - cfg.ema_decay)
        embed_sum.mul_(cfg.ema_decay).add_(sums, alpha=1 - cfg.ema_decay)
        total = size.sum()
        smoothed = (size + cfg.laplace_eps) / (total + C * cfg.laplace_eps) * total
        self.codebooks[level].copy_(embed_sum / smoothed.clamp_min(1e-12)[:, None])
        dead = size < cfg.dead_code_threshold
        if cfg.dead_code_threshold > 0 and bool(dead.any()):
            n_dead = int(dead.sum())
            fresh = x[torch.randint(0, x.shape[0], (n_dead,), device=x.device)]
            _broadcast(fresh)
            self.codebooks[level][dead] = fresh
            embed_sum[dead] = fresh * cfg.dead_code_threshold
            size[dead] = cfg.dead_code_threshold
        return counts

    # ----- inference -----

    @torch.no_grad()
    def encode(self, z: torch.Tensor, n_levels: int | None = None) -> torch.Tensor:
        """Codes [B, n_levels, F] int64 of latents z [B, D, F]; never updates anything."""
        if z.shape[1] != self.config.dim:
            raise ValueError(f"RVQ expects {self.config.dim} latent channels, got {z.shape[1]}")
        n = self._check_levels(n_levels)
        B, _, F = z.shape
        with torch.autocast(z.device.type, enabled=False):
            residual = self._rows(z)
            codes = []
            for level in range(n):
                idx = nearest_code(residual, self.codebooks[level])
                residual = residual - self.codebooks[level][idx]
                codes.append(idx.view(B, F))
        return torch.stack(codes, dim=1)

    def check_codes(self, codes: torch.Tensor) -> torch.Tensor:
        """Validate codes [B, L', F] (1 <= L' <= L, ids in [0, C)); returns them as int64."""
        codes = torch.as_tensor(codes)
        if codes.dim() != 3:
            raise CodesError(f"audio codes must be [batch, levels, frames], got shape {tuple(codes.shape)}")
        if codes.dtype.is_floating_point or codes.dtype == torch.bool or codes.is_complex():
            raise CodesError(f"audio codes must be integers, got {codes.dtype}")
        if not 1 <= codes.shape[1] <= self.levels:
            raise CodesError(f"audio codes have {codes.shape[1]} levels; this codec has 1..{self.levels}")
        if codes.numel() and (int(codes.min()) < 0 or int(codes.max()) >= self.codebook_size):
            raise CodesError(
                f"audio code ids must be in [0, {self.codebook_size}), got [{int(codes.min())}, {int(codes.max())}]"
                " (tokens from another codec, or shared-vocabulary ids not mapped back to per-level codes?)"
            )
        return codes.long()

    @torch.no_grad()
    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Latents [B, D, F] float32 from codes [B, L', F]; fewer levels than L give a coarser latent."""
        codes = self.check_codes(codes).to(self.codebooks.device)
        z = torch.zeros(codes.shape[0], codes.shape[2], self.config.dim, device=codes.device)
        for level in range(codes.shape[1]):
            z += self.codebooks[level][codes[:, level]]
        return z.transpose(1, 2)

    def bits_per_frame(self, n_levels: int | None = None) -> float:
        """Bits one latent frame costs with the first `n_levels` levels."""
        return self._check_levels(n_levels) * math.log2(self.codebook_size)


def _usage_tensors(counts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(fraction of codes used, perplexity) of one level's batch code counts, as detached tensors."""
    p = counts / counts.sum().clamp_min(1)
    entropy = -(p * p.clamp_min(1e-12).log()).sum()
    return (counts > 0).float().mean(), entropy.exp()
