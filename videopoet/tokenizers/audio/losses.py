"""Reconstruction losses of the audio codec: multi-scale mel-spectrogram L1, waveform L1 and normalized MSE.

The mel loss compares mel spectrograms at several window sizes (2^6..2^11 samples by default): short
windows judge timing, long ones pitch. At each scale it adds L1 on the linear (magnitude) mel spectrogram,
which weighs loud parts, and L1 on the log mel spectrogram, which weighs quiet parts, as in SoundStream
and EnCodec. STFTs are normalized by the window's norm (as in EnCodec) so every scale has the same
magnitude range, and mel bins grow with the window (5/32 of n_fft, at most 128) so no mel filter is
empty. Spectrograms are computed in float32 even under bf16 autocast.

The mel loss ignores phase: on pure tones it can be low while SI-SDR is poor; the waveform L1 and the
adversarial losses are what align phase.

`eps` is the floor of the log term. A pure tone's mel spectrum is nearly empty, so with a low floor (1e-5,
about 100 dB below a loud tone) the log term is ruled by the empty bins: a reconstruction with noise 20 dB
below the tone scores about as badly as silence, and worse than a clean tone of the wrong pitch. Training
the `tiny` codec on the `shapes` tones from random weights with this loss on collapses to one quiet,
input-independent buzz; a higher floor (0.1, ~35 dB below a 0.5-amplitude tone) and starting it only after a
waveform-L1 warm-up (`loss.mel_start` in training) avoid that.
"""

from __future__ import annotations

import torch
from torch import nn
from torchaudio.transforms import MelSpectrogram

DEFAULT_WINDOWS = (64, 128, 256, 512, 1024, 2048)


def mel_bins(n_fft: int, max_mels: int = 128) -> int:
    """Mel bins for a window of n_fft samples: 5/32 of n_fft (10 at 64, 80 at 512), capped at `max_mels`."""
    return max(1, min(5 * n_fft // 32, max_mels))


def _as_batch(x: torch.Tensor) -> torch.Tensor:
    """[B, 1, N] or [B, N] or [N] -> float32 [B, N]."""
    if x.dim() == 3:
        if x.shape[1] != 1:
            raise ValueError(f"expected mono audio [B, 1, N], got shape {tuple(x.shape)}")
        x = x[:, 0]
    elif x.dim() == 1:
        x = x[None]
    return x.float()


class MultiScaleMelLoss(nn.Module):
    """Mean over window sizes of L1(linear mel) * linear_weight + L1(log mel) * log_weight."""

    def __init__(
        self,
        sample_rate: int = 16000,
        windows: tuple[int, ...] = DEFAULT_WINDOWS,
        linear_weight: float = 1.0,
        log_weight: float = 1.0,
        eps: float = 1e-5,
    ) -> None:
        super().__init__()
        if not windows:
            raise ValueError("MultiScaleMelLoss needs at least one window size")
        self.linear_weight, self.log_weight, self.eps = linear_weight, log_weight, eps
        self.mels = nn.ModuleList(
            MelSpectrogram(
                sample_rate=sample_rate,
                n_fft=n,
                win_length=n,
                hop_length=n // 4,
                n_mels=mel_bins(n),
                power=1.0,
                normalized=True,
                center=True,
                pad_mode="constant",
                f_min=0.0,
                f_max=sample_rate / 2,
            )
            for n in windows
        )

    def forward(self, recon: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """recon and target [B, 1, N] (or [B, N]) -> scalar loss; 0 when they are identical."""
        if recon.shape != target.shape:
            raise ValueError(f"recon {tuple(recon.shape)} and target {tuple(target.shape)} differ in shape")
        with torch.autocast(recon.device.type, enabled=False):
            x, y = _as_batch(recon), _as_batch(target)
            total = x.new_zeros(())
            for mel in self.mels:
                mx, my = mel(x), mel(y)
                total = total + self.linear_weight * (mx - my).abs().mean()
                total = total + self.log_weight * ((mx + self.eps).log() - (my + self.eps).log()).abs().mean()
        return total / len(self.mels)


def waveform_l1(recon: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean absolute sample difference."""
    if recon.shape != target.shape:
        raise ValueError(f"recon {tuple(recon.shape)} and target {tuple(target.shape)} differ in shape")
    return (recon.float() - target.float()).abs().mean()


def waveform_nmse(recon: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared sample difference over the target's mean power: 1 for silence, 0 for a perfect copy,
    whatever the loudness. Unlike L1, whose minimum for a noisy guess is near silence, it rewards any
    reconstruction in phase with the input, so a fresh codec leaves its silent start at once (SI-SDR > 0)."""
    if recon.shape != target.shape:
        raise ValueError(f"recon {tuple(recon.shape)} and target {tuple(target.shape)} differ in shape")
    target = target.float()
    return (recon.float() - target).pow(2).mean() / target.pow(2).mean().clamp(min=1e-8)
