"""Multi-scale STFT discriminator (EnCodec's MS-STFT discriminator) and the feature-matching loss.

Each scale takes the complex STFT of the waveform at one window size, stacks its real and imaginary parts
as two channels `[B, 2, frames, freqs]` and runs a small 2D conv net (kernels 3x9, dilations 1, 2, 4 in
time, stride 2 in frequency, LeakyReLU 0.2, weight normalization). Complex spectra (rather than
magnitudes) let it judge phase too. Several window sizes trade time against frequency resolution.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class STFTDiscriminatorConfig:
    """Window sizes and widths of the multi-scale STFT discriminator."""

    n_ffts: tuple[int, ...] = (2048, 1024, 512, 256, 128)  # one sub-discriminator per window size
    hop_ratio: float = 0.25  # hop = n_fft * hop_ratio
    filters: int = 32  # channels of the first conv
    filters_scale: int = 1  # channel growth per dilated layer
    max_filters: int = 1024
    dilations: tuple[int, ...] = (1, 2, 4)

    def __post_init__(self) -> None:
        self.n_ffts = tuple(self.n_ffts)
        self.dilations = tuple(self.dilations)
        if not self.n_ffts or any(n < 4 for n in self.n_ffts):
            raise ValueError(f"n_ffts must be a non-empty list of window sizes >= 4, got {list(self.n_ffts)}")
        if not 0 < self.hop_ratio <= 1:
            raise ValueError(f"hop_ratio must be in (0, 1], got {self.hop_ratio}")
        if self.filters < 1 or self.filters_scale < 1 or self.max_filters < 1:
            raise ValueError("filters, filters_scale and max_filters must be at least 1")
        if not self.dilations or min(self.dilations) < 1:
            raise ValueError(
                f"dilations must be a non-empty list of integers >= 1, got {list(self.dilations)}"
            )


def _wn_conv2d(
    cin: int,
    cout: int,
    kernel: tuple[int, int],
    stride: tuple[int, int] = (1, 1),
    dilation: tuple[int, int] = (1, 1),
) -> nn.Module:
    padding = ((kernel[0] - 1) * dilation[0] // 2, (kernel[1] - 1) * dilation[1] // 2)
    conv = nn.Conv2d(cin, cout, kernel, stride=stride, dilation=dilation, padding=padding)
    return nn.utils.parametrizations.weight_norm(conv)


class STFTDiscriminator(nn.Module):
    """One scale: complex STFT at `n_fft` -> 2D convs -> logits map `[B, 1, frames, freqs']`."""

    def __init__(self, n_fft: int, config: STFTDiscriminatorConfig) -> None:
        super().__init__()
        self.n_fft, self.hop = n_fft, max(1, int(n_fft * config.hop_ratio))
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)
        ch = config.filters
        convs = [_wn_conv2d(2, ch, (3, 9))]
        for i, d in enumerate(config.dilations):
            out = min(config.filters_scale ** (i + 1) * config.filters, config.max_filters)
            convs.append(_wn_conv2d(ch, out, (3, 9), stride=(1, 2), dilation=(d, 1)))
            ch = out
        convs.append(_wn_conv2d(ch, ch, (3, 3)))
        self.convs = nn.ModuleList(convs)
        self.post = _wn_conv2d(ch, 1, (3, 3))
        self.act = nn.LeakyReLU(0.2)

    def spectrogram(self, wav: torch.Tensor) -> torch.Tensor:
        """[B, 1, N] -> real/imag channels [B, 2, frames, freqs], computed in float32."""
        with torch.autocast(wav.device.type, enabled=False):
            spec = torch.stft(
                wav.float().reshape(-1, wav.shape[-1]),
                self.n_fft,
                self.hop,
                window=self.window,
                center=True,
                pad_mode="constant",
                normalized=True,
                return_complex=True,
            )  # [B, freqs, frames]
        return torch.stack([spec.real, spec.imag], dim=1).transpose(2, 3)

    def forward(self, wav: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        x = self.spectrogram(wav)
        feats = []
        for conv in self.convs:
            x = self.act(conv(x))
            feats.append(x)
        return self.post(x), feats


class MultiScaleSTFTDiscriminator(nn.Module):
    """One `STFTDiscriminator` per window size; returns per-scale logits and feature maps."""

    def __init__(self, config: STFTDiscriminatorConfig | None = None) -> None:
        super().__init__()
        self.config = config or STFTDiscriminatorConfig()
        self.scales = nn.ModuleList(STFTDiscriminator(n, self.config) for n in self.config.n_ffts)

    def forward(self, wav: torch.Tensor) -> tuple[list[torch.Tensor], list[list[torch.Tensor]]]:
        """wav [B, 1, N] -> (logits per scale, feature maps per scale)."""
        if wav.dim() == 2:
            wav = wav[:, None]
        logits, feats = [], []
        for scale in self.scales:
            logit, fmap = scale(wav)
            logits.append(logit)
            feats.append(fmap)
        return logits, feats


def feature_matching_loss(
    real_feats: list[list[torch.Tensor]], fake_feats: list[list[torch.Tensor]]
) -> torch.Tensor:
    """Mean over scales and layers of L1(fake, real) / mean|real| (EnCodec's relative feature matching:
    every layer counts alike whatever its scale). Real features are detached: only the generator learns."""
    if len(real_feats) != len(fake_feats):
        raise ValueError(f"{len(real_feats)} real scales vs {len(fake_feats)} fake scales")
    total, n = None, 0
    for real_scale, fake_scale in zip(real_feats, fake_feats):
        for real, fake in zip(real_scale, fake_scale):
            real = real.detach().float()
            term = (fake.float() - real).abs().mean() / real.abs().mean().clamp_min(1e-8)
            total = term if total is None else total + term
            n += 1
    if total is None:
        raise ValueError("no feature maps given")
    return total / n
