"""Audio reconstruction metrics: SI-SDR, log-mel distance, and an Opus reference at a given bitrate.

Why an Opus reference: a codec's SI-SDR and mel distance only mean something next to a well-known codec
at the same bitrate, so `opus_reference` encodes the same audio with libopus (through PyAV) and scores it.
"""

from __future__ import annotations

import io
import math
from functools import lru_cache

import numpy as np
import torch

OPUS_RATES = (48000, 24000, 16000, 12000, 8000)  # sample rates libopus takes
OPUS_MIN_KBPS = 6.0  # lowest bitrate asked of libopus (mono); lower requests are clamped to it
OPUS_MAX_KBPS = 256.0
_EPS = 1e-8


def _as_1d(x, what: str) -> np.ndarray:
    a = np.asarray(x.detach().cpu() if isinstance(x, torch.Tensor) else x, dtype=np.float64).reshape(-1)
    if not np.isfinite(a).all():
        raise ValueError(f"{what} contains NaN or infinite samples")
    return a


def si_sdr(ref, est) -> float:
    """Scale-invariant signal-to-distortion ratio in dB of `est` against `ref` (1-D, same length after
    trimming to the shorter). Silent reference and estimate give 0 dB rather than NaN."""
    r, e = _as_1d(ref, "reference"), _as_1d(est, "estimate")
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
    r, e = _as_1d(ref, "reference"), _as_1d(est, "estimate")
    n = min(r.size, e.size)
    if n == 0:
        raise ValueError("empty audio")
    mel = _mel(int(sample_rate))
    x = torch.from_numpy(np.stack([r[:n], e[:n]]).astype(np.float32))
    with torch.no_grad():
        m = (mel(x) + 1e-5).log()
    return float((m[0] - m[1]).abs().mean())


def _best_lag(ref: np.ndarray, est: np.ndarray, max_lag: int) -> int:
    """The shift d (|d| <= max_lag) that best aligns est[t + d] with ref[t] (cross-correlation peak)."""
    n = 1 << int(math.ceil(math.log2(ref.size + est.size)))
    corr = np.fft.irfft(np.fft.rfft(est, n) * np.conj(np.fft.rfft(ref, n)), n)
    lags = np.concatenate([np.arange(0, max_lag + 1), np.arange(-max_lag, 0)])
    return int(lags[int(np.argmax(corr[lags]))])


def opus_roundtrip(wav, sample_rate: int, bitrate_kbps: float) -> tuple[np.ndarray, float]:
    """`wav` (float mono [N]) through libopus at `bitrate_kbps` (clamped to [6, 256]): the decoded audio at
    `sample_rate`, aligned to the input and of its length, and the bitrate actually asked of the encoder."""
    import av
    import torchaudio.functional as AF

    x = _as_1d(wav, "waveform").astype(np.float32)
    kbps = float(min(max(bitrate_kbps, OPUS_MIN_KBPS), OPUS_MAX_KBPS))
    rate = min((r for r in OPUS_RATES if r >= sample_rate), default=48000)  # the nearest rate Opus takes
    y = AF.resample(torch.from_numpy(x), sample_rate, rate).numpy() if rate != sample_rate else x
    pcm = np.round(np.clip(y, -1, 1) * 32767).astype(np.int16)
    buf = io.BytesIO()
    with av.open(buf, "w", format="ogg") as out:
        stream = out.add_stream("libopus", rate=rate, layout="mono")
        stream.bit_rate = int(kbps * 1000)
        frame = av.AudioFrame.from_ndarray(pcm[None], format="s16", layout="mono")
        frame.sample_rate = rate
        for packet in stream.encode(frame):
            out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    buf.seek(0)
    chunks, dec_rate = [], rate
    with av.open(buf, "r") as inp:
        for frame in inp.decode(audio=0):  # the decoder picks its own rate (usually 48 kHz) and format
            dec_rate = frame.sample_rate
            a = frame.to_ndarray().astype(np.float32)
            if frame.format.name.startswith("s16"):
                a = a / 32768.0
            channels = len(frame.layout.channels)
            a = a.reshape(channels, -1) if frame.format.is_planar else a.reshape(-1, channels).T
            chunks.append(a.mean(0))
    dec = np.concatenate(chunks).astype(np.float32) if chunks else np.zeros(0, np.float32)
    if dec_rate != sample_rate and dec.size:
        dec = AF.resample(torch.from_numpy(dec), dec_rate, sample_rate).numpy()
    if dec.size and x.size:
        lag = _best_lag(x.astype(np.float64), dec.astype(np.float64), min(2000, x.size // 2))
        dec = dec[lag:] if lag >= 0 else np.concatenate([np.zeros(-lag, np.float32), dec])
    dec = dec[: x.size] if dec.size >= x.size else np.pad(dec, (0, x.size - dec.size))
    return dec, kbps


def opus_reference(wav, sample_rate: int, bitrate_kbps: float) -> dict[str, float]:
    """SI-SDR and mel distance of `wav` after an Opus round trip at `bitrate_kbps` (clamped; the bitrate
    actually used is returned as `bitrate_kbps`)."""
    dec, kbps = opus_roundtrip(wav, sample_rate, bitrate_kbps)
    return {
        "si_sdr": si_sdr(wav, dec),
        "mel_distance": mel_distance(wav, dec, sample_rate),
        "bitrate_kbps": kbps,
    }
