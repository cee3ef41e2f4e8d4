"""Real codecs as references at a matched rate: H.264 (libx264) for video, Opus (libopus) for sound.

A tokenizer's PSNR or SI-SDR only means something beside a well-known codec at the same rate, so these
encode the same frames or waveform with PyAV and score the round trip with `videopoet.metrics`.
"""

from __future__ import annotations

import io
import math
from fractions import Fraction

import av
import numpy as np
import torch

from videopoet.metrics.audio import as_1d, mel_distance, si_sdr
from videopoet.metrics.video import psnr, ssim

OPUS_RATES = (48000, 24000, 16000, 12000, 8000)  # sample rates libopus takes
OPUS_MIN_KBPS = 6.0  # lowest bitrate asked of libopus (mono); lower requests are clamped to it
OPUS_MAX_KBPS = 256.0


def h264_encode(frames: np.ndarray, fps: float, crf: int) -> tuple[np.ndarray, float]:
    """Encode uint8 `[T, H, W, 3]` frames with libx264 (yuv420p, preset medium, constant rate factor
    `crf`), decode them back; returns (decoded frames, actual bits per pixel of the packets)."""
    frames = np.asarray(frames)
    t, h, w = frames.shape[:3]
    pad = ((0, 0), (0, h % 2), (0, w % 2), (0, 0))
    src = np.pad(frames, pad, mode="edge") if (h % 2 or w % 2) else frames
    rate = Fraction(fps).limit_denominator(1001)
    buf = io.BytesIO()
    packet_bytes = 0
    with av.open(buf, mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=rate)
        stream.width, stream.height = src.shape[2], src.shape[1]
        stream.pix_fmt = "yuv420p"
        stream.codec_context.time_base = 1 / rate
        stream.codec_context.thread_count = 1
        stream.options = {"preset": "medium", "crf": str(crf)}
        for i, rgb in enumerate([*src, None]):
            frame = None
            if rgb is not None:
                frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
                frame.pts, frame.time_base = i, stream.codec_context.time_base
            for packet in stream.encode(frame):
                packet_bytes += packet.size
                container.mux(packet)
    buf.seek(0)
    with av.open(buf, mode="r") as container:
        decoded = [f.to_ndarray(format="rgb24")[:h, :w] for f in container.decode(video=0)]
    return np.stack(decoded[:t]), packet_bytes * 8 / (t * h * w)


def h264_at_bpp(frames: np.ndarray, fps: float, target_bpp: float) -> tuple[np.ndarray, float, int]:
    """H.264 of `frames` at the best quality that spends at most `target_bpp` bits per pixel: bisects the
    constant rate factor (x264's average-bit-rate mode cannot go below 1 kbit/s and misses its target on
    short clips). Returns (decoded frames, actual bpp, crf); when even crf 51 spends more, crf 51."""
    lo, hi = 0, 51
    best = h264_encode(frames, fps, hi)
    if best[1] > target_bpp:
        return best[0], best[1], hi
    while hi - lo > 1:  # invariant: crf `hi` fits the budget
        mid = (lo + hi) // 2
        out = h264_encode(frames, fps, mid)
        if out[1] <= target_bpp:
            hi, best = mid, out
        else:
            lo = mid
    return best[0], best[1], hi


def h264_reference(frames: np.ndarray, fps: float, target_bpp: float) -> tuple[float, float, float]:
    """(PSNR, SSIM, actual bits per pixel) of `frames` through H.264 at about `target_bpp` bits per pixel.

    The tokenizer's bits per pixel is tokens * K / (T * H * W). The packets' bits are counted (no container
    overhead); at very low targets on tiny clips even crf 51 may spend more, so the actual rate is
    returned beside the scores."""
    decoded, bpp, _ = h264_at_bpp(frames, fps, target_bpp)
    return psnr(frames, decoded), ssim(frames, decoded), bpp


def _best_lag(ref: np.ndarray, est: np.ndarray, max_lag: int) -> int:
    """The shift d (|d| <= max_lag) that best aligns est[t + d] with ref[t] (cross-correlation peak)."""
    n = 1 << int(math.ceil(math.log2(ref.size + est.size)))
    corr = np.fft.irfft(np.fft.rfft(est, n) * np.conj(np.fft.rfft(ref, n)), n)
    lags = np.concatenate([np.arange(0, max_lag + 1), np.arange(-max_lag, 0)])
    return int(lags[int(np.argmax(corr[lags]))])


def opus_roundtrip(wav, sample_rate: int, bitrate_kbps: float) -> tuple[np.ndarray, float]:
    """`wav` (float mono [N]) through libopus at `bitrate_kbps` (clamped to [6, 256]): the decoded audio at
    `sample_rate`, aligned to the input and of its length, and the bitrate actually asked of the encoder."""
    import torchaudio.functional as AF

    x = as_1d(wav, "waveform").astype(np.float32)
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
