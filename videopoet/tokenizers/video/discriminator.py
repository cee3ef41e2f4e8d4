"""Patch discriminator for the video tokenizer's adversarial loss.

A 3D PatchGAN: strided 3D convolutions over the clip give one real/fake logit per spatio-temporal patch,
so it judges local texture and motion (what L1/L2 reconstruction blurs) rather than the whole clip. It
is not causal (it only trains the tokenizer) and takes any `[B, 3, T, H, W]` clip including a still image
(T = 1). MAGVIT-v2 uses a StyleGAN discriminator instead; a PatchGAN is smaller and fast enough for CPU
runs. Losses (hinge, LeCam, adaptive weight) live in `videopoet.tokenizers.adversarial`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class DiscriminatorConfig:
    """Width and depth of the patch discriminator. Each stage halves space; the last `temporal_stages`
    also halve time (a 1-frame input stays 1 frame)."""

    channels: int = 64
    channel_mult: tuple[int, ...] = (2, 4, 4)  # one strided stage per entry
    temporal_stages: int = 2
    norm_groups: int = 16

    def __post_init__(self) -> None:
        self.channel_mult = tuple(self.channel_mult)
        if self.channels < 1 or not self.channel_mult or min(self.channel_mult) < 1:
            raise ValueError("discriminator channels and channel_mult must be positive and non-empty")
        if not 0 <= self.temporal_stages <= len(self.channel_mult):
            raise ValueError(
                f"temporal_stages must be in [0, {len(self.channel_mult)}], got {self.temporal_stages}"
            )
        bad = [self.channels * m for m in (1, *self.channel_mult) if (self.channels * m) % self.norm_groups]
        if self.norm_groups < 1 or bad:
            raise ValueError(f"norm_groups {self.norm_groups} must divide every stage's channels, not {bad}")

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> DiscriminatorConfig:
        if name not in DISCRIMINATOR_PRESETS:
            raise KeyError(
                f"unknown discriminator preset {name!r}; choose one of {', '.join(DISCRIMINATOR_PRESETS)}"
            )
        return dataclasses.replace(DISCRIMINATOR_PRESETS[name], **overrides)


DISCRIMINATOR_PRESETS: dict[str, DiscriminatorConfig] = {
    "tiny": DiscriminatorConfig(channels=16, norm_groups=8),
    "videopoet": DiscriminatorConfig(),
}


class PatchDiscriminator(nn.Module):
    """`[B, 3, T, H, W]` in [-1, 1] -> logits `[B, 1, t, h, w]`, one per patch."""

    def __init__(self, config: DiscriminatorConfig) -> None:
        super().__init__()
        self.config = config
        n = len(config.channel_mult)
        cin = config.channels
        self.conv_in = nn.Conv3d(3, cin, 3, padding=1)
        self.stages = nn.ModuleList()
        for i, mult in enumerate(config.channel_mult):
            cout = config.channels * mult
            time_stride = 2 if i >= n - config.temporal_stages else 1
            self.stages.append(
                nn.Sequential(
                    nn.Conv3d(cin, cout, (3, 4, 4), stride=(time_stride, 2, 2), padding=1),
                    nn.GroupNorm(config.norm_groups, cout),
                    nn.LeakyReLU(0.2),
                )
            )
            cin = cout
        self.conv_out = nn.Conv3d(cin, 1, 3, padding=1)

    def forward(
        self, x: torch.Tensor, return_features: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, list[torch.Tensor]]:
        """Patch logits; with `return_features`, also each stage's activations (for feature matching)."""
        if x.ndim != 5 or x.shape[1] != 3:
            raise ValueError(f"discriminator expects [B, 3, T, H, W], got {tuple(x.shape)}")
        h = F.leaky_relu(self.conv_in(x), 0.2)
        features = []
        for stage in self.stages:
            h = stage(h)
            features.append(h)
        logits = self.conv_out(h)
        return (logits, features) if return_features else logits

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
