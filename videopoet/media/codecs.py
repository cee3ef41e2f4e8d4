"""Real codecs as references at a matched rate: H.264 (libx264) for video, Opus (libopus) for sound.

A tokenizer's PSNR or SI-SDR only means something beside a well-known codec at the same rate, so these
encode the same frames or waveform with PyAV and score the round trip with `videopoet.metrics`.

For video there are two references: `h264_reference` (preset medium, the best crf whose whole packets fit
the rate) and x264's rate-distortion curve, `h264_curve` (preset veryslow, a crf sweep, payload bits only)
read at any rate with `h264_at_rate` (interpolated in log bpp, or x264's lowest reachable rate).
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterable
from fractions import Fraction
from typing import Any

import av
import numpy as np
import torch

from videopoet.metrics.audio import as_1d, mel_distance, si_sdr
from videopoet.metrics.video import psnr, ssim

OPUS_RATES = (48000, 24000, 16000, 12000, 8000)  # sample rates libopus takes
OPUS_MIN_KBPS = 6.0  # lowest bitrate asked of libopus (mono); lower requests are clamped to it
OPUS_MAX_KBPS = 256.0
H264_PRESETS = (
    "ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow", "placebo",
)  # fmt: skip
H264_MAX_CRF = 51  # x264's highest (coarsest) constant rate factor for 8-bit video: its lowest reachable rate
_SLICE_NAL_TYPES = frozenset(range(1, 6))  # coded slices (non-IDR, partitions A-C, IDR): the picture data
# x264 runs its C code, no assembly, so that it repeats itself: with its assembly on a CPU with AVX-512,
# repeated encodes of one clip differed (MB-tree rate control; up to 7 bitstreams in 40 encodes), while the C
# code gave the same bits every time (40 val clips x 3 crfs x 5 runs, 64x64 and 128x128). The C code is about
# 4x slower, small beside the metrics (0.7 s for 11 crfs at 17x128x128). docs/results.md, "Real video".
H264_X264_PARAMS = "asm=0"


def _nal_units(data: bytes) -> list[bytes]:
    """The NAL units of one H.264 packet, without their framing: Annex B start codes (what libx264 hands
    PyAV) or, failing that, 4-byte big-endian length prefixes (avcC)."""
    if data.startswith((b"\x00\x00\x01", b"\x00\x00\x00\x01")):
        starts, i = [], data.find(b"\x00\x00\x01")
        while i >= 0:
            starts.append(i + 3)
            i = data.find(b"\x00\x00\x01", i + 3)
        ends = [s - 3 for s in starts[1:]] + [len(data)]
        return [data[a:b].rstrip(b"\x00") for a, b in zip(starts, ends)]  # a NAL never ends in a zero byte
    units, i = [], 0
    while i + 4 <= len(data):
        n = int.from_bytes(data[i : i + 4], "big")
        units.append(data[i + 4 : i + 4 + n])
        i += 4 + n
    return units


def h264_roundtrip(
    frames: np.ndarray, fps: float, crf: int, preset: str = "veryslow"
) -> tuple[np.ndarray, float, float]:
    """Encode uint8 `[T, H, W, 3]` frames with libx264 (yuv420p, `preset`, constant rate factor `crf`, one
    thread, x264's C code: `H264_X264_PARAMS`) and decode them back; the same input gives the same bits.

    Returns (decoded frames, payload bits per pixel, packet bits per pixel). The payload is the coded-slice
    NAL units (the pictures); the packets add their start codes and, on the first frame, x264's ~700-byte
    version-and-options SEI message, which alone is about 0.08 bpp at 17x64x64 (the SPS/PPS go to the
    stream header and count in neither). Odd sides are
    edge-padded to even for 4:2:0 and cropped back; bits are divided by the unpadded T * H * W."""
    if preset not in H264_PRESETS:
        raise ValueError(f"unknown x264 preset {preset!r}; use one of {', '.join(H264_PRESETS)}")
    frames = np.asarray(frames)
    t, h, w = frames.shape[:3]
    pad = ((0, 0), (0, h % 2), (0, w % 2), (0, 0))
    src = np.pad(frames, pad, mode="edge") if (h % 2 or w % 2) else frames
    rate = Fraction(fps).limit_denominator(1001)
    buf = io.BytesIO()
    packet_bytes = slice_bytes = 0
    with av.open(buf, mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=rate)
        stream.width, stream.height = src.shape[2], src.shape[1]
        stream.pix_fmt = "yuv420p"
        stream.codec_context.time_base = 1 / rate
        stream.codec_context.thread_count = 1
        stream.options = {"preset": preset, "crf": str(crf), "x264-params": H264_X264_PARAMS}
        for i, rgb in enumerate([*src, None]):
            frame = None
            if rgb is not None:
                frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
                frame.pts, frame.time_base = i, stream.codec_context.time_base
            for packet in stream.encode(frame):
                packet_bytes += packet.size
                slice_bytes += sum(
                    len(u) for u in _nal_units(bytes(packet)) if u and (u[0] & 0x1F) in _SLICE_NAL_TYPES
                )
                container.mux(packet)
    buf.seek(0)
    with av.open(buf, mode="r") as container:
        decoded = [f.to_ndarray(format="rgb24")[:h, :w] for f in container.decode(video=0)]
    pixels = t * h * w
    return np.stack(decoded[:t]), slice_bytes * 8 / pixels, packet_bytes * 8 / pixels


def h264_encode(frames: np.ndarray, fps: float, crf: int, preset: str = "medium") -> tuple[np.ndarray, float]:
    """Encode uint8 `[T, H, W, 3]` frames with libx264 (yuv420p, `preset`, constant rate factor `crf`),
    decode them back; returns (decoded frames, bits per pixel of the packets). The packets include x264's
    version SEI on the first frame (see `h264_roundtrip`, whose payload bpp `h264_curve` reports)."""
    decoded, _, packet_bpp = h264_roundtrip(frames, fps, crf, preset)
    return decoded, packet_bpp


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

    The tokenizer's bits per pixel is tokens * K / (T * H * W). The whole packets' bits are counted (no
    container, but with x264's version SEI of several hundred bytes on the first frame, which dominates on
    small clips: `h264_curve` counts the coded slices only); at very low targets on tiny clips even crf 51
    may spend more, so the actual rate is returned beside the scores."""
    decoded, bpp, _ = h264_at_bpp(frames, fps, target_bpp)
    return psnr(frames, decoded), ssim(frames, decoded), bpp


def h264_curve(
    frames: np.ndarray,
    fps: float,
    preset: str = "veryslow",
    max_bpp: float | None = None,
    crfs: Iterable[int] | None = None,
) -> list[dict[str, float]]:
    """x264's rate-distortion curve on uint8 `[T, H, W, 3]` frames: one point per constant rate factor.

    The sweep goes from crf 51 (x264's coarsest, its lowest reachable rate) down through every crf to 0,
    or through `crfs` (any subset of 0..51, e.g. `range(51, -1, -3)`; crf 51 is always added). With
    `max_bpp` it stops after the first point whose bpp exceeds `max_bpp`, so that point still brackets
    `max_bpp` from above. Each point is {crf, bpp, packet_bpp, psnr, ssim}: `bpp` counts the coded-slice
    payload only (see `h264_roundtrip`: no container, no start codes, no x264 version SEI), `packet_bpp`
    the whole packets; PSNR and SSIM are `videopoet.metrics.video`'s over the clip.

    The points come sorted by bpp (rising); crf is nearly but not exactly monotone in rate, and of points
    with the same bpp only the one of highest PSNR is kept, so bpp rises strictly along the list. The
    libx264 round trips are cheap (52 of them: a few seconds at 17x128x128); SSIM is most of the cost."""
    order = sorted({int(c) for c in (range(H264_MAX_CRF + 1) if crfs is None else crfs)} | {H264_MAX_CRF})
    if order[0] < 0 or order[-1] > H264_MAX_CRF:
        raise ValueError(f"crf values must lie in 0..{H264_MAX_CRF}, got {order[0]}..{order[-1]}")
    frames = np.asarray(frames)
    points = []
    for crf in reversed(order):
        decoded, bpp, packet_bpp = h264_roundtrip(frames, fps, crf, preset)
        points.append(
            {
                "crf": crf,
                "bpp": bpp,
                "packet_bpp": packet_bpp,
                "psnr": psnr(frames, decoded),
                "ssim": ssim(frames, decoded),
            }
        )
        if max_bpp is not None and bpp > max_bpp:
            break
    points.sort(key=lambda p: (p["bpp"], -p["psnr"], -p["crf"]))
    return [p for i, p in enumerate(points) if i == 0 or p["bpp"] > points[i - 1]["bpp"]]


def h264_at_rate(curve: list[dict[str, float]], bpp: float) -> dict[str, Any]:
    """x264's quality at `bpp` bits per pixel, read off a `h264_curve`.

    Between two points PSNR and SSIM are interpolated linearly in log(bpp). Below the curve's lowest rate
    (normally crf 51) x264 cannot go: nothing is interpolated, the lowest point's psnr, ssim and bpp are
    returned with `reachable` False ("x264 at its lowest reachable rate"). Above the curve's top the top
    point is returned (`interpolated` False, `reachable` True). Returns {bpp (the rate the scores are at),
    psnr, ssim, reachable, interpolated, lowest (the lowest-rate point), nearest (the point nearest in
    log rate: the one to re-encode with `h264_roundtrip` for a side-by-side picture)}."""
    points = sorted(curve, key=lambda p: p["bpp"])
    if not points:
        raise ValueError("empty x264 curve")
    lowest, top = points[0], points[-1]
    if not bpp > 0 or bpp < lowest["bpp"]:
        at, reachable, interpolated = lowest, False, False
        nearest = lowest
    else:
        nearest = min(points, key=lambda p: abs(math.log(p["bpp"]) - math.log(bpp)))
        reachable = True
        if bpp >= top["bpp"]:
            at, interpolated = top, bpp == top["bpp"]
        else:
            i = next(i for i, p in enumerate(points) if p["bpp"] > bpp) - 1
            p0, p1 = points[i], points[i + 1]
            w = (math.log(bpp) - math.log(p0["bpp"])) / (math.log(p1["bpp"]) - math.log(p0["bpp"]))
            at = {
                "bpp": bpp,
                **{k: p0[k] if w == 0 else p0[k] + w * (p1[k] - p0[k]) for k in ("psnr", "ssim")},
            }
            interpolated = True
    return {
        "bpp": at["bpp"],
        "psnr": at["psnr"],
        "ssim": at["ssim"],
        "reachable": reachable,
        "interpolated": interpolated,
        "lowest": dict(lowest),
        "nearest": dict(nearest),
    }


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
