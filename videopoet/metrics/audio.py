"""Audio metrics: SI-SDR, log-mel distances (one scale, several scales), loudness (ITU-R BS.1770) and the
dominant pitch of a tone."""

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


MULTISCALE_WINDOWS = (64, 128, 256, 512, 1024, 2048)  # STFT window sizes of `multiscale_mel_distance`
# Magnitude floor before the log10: just above the quantization noise of 16-bit audio (white noise at its
# RMS, 2^-15 / sqrt(12), reads 2e-5 to 5e-5 in these mel bands), so differences a 16-bit source cannot
# hold do not count; a full-scale tone peaks at 4 to 25.
MULTISCALE_LOG_FLOOR = 1e-4


@lru_cache(maxsize=16)
def _mel_at(sample_rate: int, n_fft: int):
    from torchaudio.transforms import MelSpectrogram

    return MelSpectrogram(sample_rate=sample_rate, n_fft=n_fft, hop_length=n_fft // 4, n_mels=max(1, min(5 * n_fft // 32, 128)),
                          power=1.0, normalized=True, center=True, pad_mode="constant")  # fmt: skip


def multiscale_mel_distance(
    ref, est, sample_rate: int, windows: tuple[int, ...] = MULTISCALE_WINDOWS, floor: float = MULTISCALE_LOG_FLOOR
) -> float:
    """Mean over STFT windows (64, 128, 256, 512, 1024, 2048 samples by default; hop a quarter window) of the
    mean L1 distance between log10 mel magnitude spectrograms floored at `floor`; 0 for identical audio.

    Short windows judge timing (transients, onsets), long ones pitch and harmonics, so one number covers
    both where the single-scale `mel_distance` sees only one resolution. Mel bins are 5/32 of the window
    (at most 128, so no filter is empty) and each STFT is normalized by its window's norm, so every scale
    has the same range; the same layout as the codec's training loss, but log10 only (no linear term).
    The floor (`MULTISCALE_LOG_FLOOR`, 1e-4) sits just above 16-bit quantization noise, so bins a 16-bit
    source cannot hold do not count (how the score moves with the floor: docs/results.md).
    Inputs are 1-D and trimmed to the shorter; a window longer than the audio still works (zero-padded)."""
    r, e = as_1d(ref, "reference"), as_1d(est, "estimate")
    n = min(r.size, e.size)
    if n == 0:
        raise ValueError("empty audio")
    if not windows or min(windows) < 16:
        raise ValueError(f"windows must be STFT sizes >= 16, got {list(windows)}")
    if not floor > 0:
        raise ValueError(f"floor must be positive, got {floor}")
    x = torch.from_numpy(np.stack([r[:n], e[:n]]).astype(np.float32))
    total = 0.0
    with torch.no_grad():
        for w in windows:
            m = _mel_at(int(sample_rate), int(w))(x).clamp_min(floor).log10()
            total += float((m[0] - m[1]).abs().mean())
    return total / len(windows)


LOUDNESS_BLOCK_S = 0.4  # BS.1770 gating block: a clip shorter than this has no loudness
SILENCE_LUFS = -70.0  # BS.1770's absolute gate: a clip with no block above it counts as this loud


def loudness_lufs(wav, sample_rate: int) -> float | None:
    """Integrated loudness in LUFS (ITU-R BS.1770-4: K-weighting, 400 ms blocks, absolute and relative
    gates; `torchaudio.functional.loudness`) of mono `wav`. `SILENCE_LUFS` (-70) for a clip with no block
    above the absolute gate (silence); None for a clip shorter than one 400 ms block."""
    x = as_1d(wav, "waveform")
    if x.size < round(LOUDNESS_BLOCK_S * sample_rate):
        return None
    import torchaudio.functional as AF

    with torch.no_grad():
        value = float(AF.loudness(torch.from_numpy(x.astype(np.float32))[None], int(sample_rate)))
    return value if math.isfinite(value) and value > SILENCE_LUFS else SILENCE_LUFS


def loudness_difference(ref, est, sample_rate: int) -> float:
    """Loudness of `est` minus loudness of `ref` in LU (BS.1770; see `loudness_lufs`), both trimmed to the
    shorter: positive when `est` is louder, 0 for identical audio and for two silent clips (silence counts
    as -70 LUFS, so a silent estimate of speech at -23 LUFS gives -47). NaN when the clips are shorter
    than one 400 ms block, where BS.1770 defines no loudness."""
    r, e = as_1d(ref, "reference"), as_1d(est, "estimate")
    n = min(r.size, e.size)
    lr, le = loudness_lufs(r[:n], sample_rate), loudness_lufs(e[:n], sample_rate)
    return math.nan if lr is None or le is None else le - lr


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
