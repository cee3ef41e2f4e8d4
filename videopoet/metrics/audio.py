"""Audio metrics: SI-SDR, log-mel distance, and the dominant pitch of a tone."""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch

SILENCE_RMS = 1e-3  # below this RMS a waveform has no pitch
MIN_PITCH_HZ = 40.0
_EPS = 1e-8


def as_1d(x, what: str) -> np.ndarray:
    a = np.asarray(x.detach().cpu() if isinstance(x, torch.Tensor) else x, dtype=np.float64).reshape(-1)
    if not np.isfinite(a).all():
        raise ValueError(f"{what} contains NaN or infinite samples")
    return a


def si_sdr(ref, est) -> float:
    """Scale-invariant signal-to-distortion ratio in dB of `est` against `ref` (1-D, same length after
    trimming to the shorter). Silent reference and estimate give 0 dB rather than NaN."""
    r, e = as_1d(ref, "reference"), as_1d(est, "estimate")
    n = min(r.size, e.size)
    r, e = r[:n] - r[:n].mean(), e[:n] - e[:n].mean()
    alpha = float(np.dot(e, r) / (np.dot(r, r) + _EPS))
    target = alpha * r
    noise = e - target
    return float(10.0 * math.log10((np.dot(target, target) + _EPS) / (np.dot(noise, noise) + _EPS)))


@lru_cache(maxsize=8)
def _mel(sample_rate: int):
    from torchaudio.transforms import MelSpectrogram

    n_fft = 1024 if sample_rate >= 16000 else 512
    return MelSpectrogram(sample_rate=sample_rate, n_fft=n_fft, hop_length=n_fft // 4, n_mels=64, power=1.0)


def mel_distance(ref, est, sample_rate: int) -> float:
    """Mean L1 distance between log-mel spectrograms (natural log, 64 bands); 0 for identical audio."""
    r, e = as_1d(ref, "reference"), as_1d(est, "estimate")
    n = min(r.size, e.size)
    if n == 0:
        raise ValueError("empty audio")
    mel = _mel(int(sample_rate))
    x = torch.from_numpy(np.stack([r[:n], e[:n]]).astype(np.float32))
    with torch.no_grad():
        m = (mel(x) + 1e-5).log()
    return float((m[0] - m[1]).abs().mean())


def read_audio_pitch(wav, sample_rate: int) -> float | None:
    """The dominant frequency of ``wav`` in Hz (float mono ``[N]``; 2-D input is mixed down), None if silent."""
    x = np.asarray(wav, dtype=np.float64)
    if x.ndim == 2:
        x = x.mean(axis=0 if x.shape[0] <= x.shape[1] else 1)
    x = x.reshape(-1)
    x = x[np.isfinite(x)]
    if x.size < 64 or sample_rate <= 0:
        return None
    x = x - x.mean()
    if float(np.sqrt(np.mean(x * x))) < SILENCE_RMS:
        return None
    n = 1 << int(math.ceil(math.log2(4 * x.size)))
    spec = np.abs(np.fft.rfft(x * np.hanning(x.size), n))
    lo = int(math.ceil(MIN_PITCH_HZ * n / sample_rate))
    hi = min(spec.size - 2, int(0.48 * n))
    if hi <= lo:
        return None
    k = lo + int(np.argmax(spec[lo:hi]))
    a, b, c = np.log(spec[k - 1 : k + 2] + 1e-12)
    denom = a - 2.0 * b + c
    delta = 0.5 * (a - c) / denom if denom < 0 else 0.0
    return float((k + delta) * sample_rate / n)
