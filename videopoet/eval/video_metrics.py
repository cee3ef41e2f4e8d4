"""Video reconstruction metrics: PSNR, SSIM, and an H.264 reference at a matched bit rate.

Inputs are videos as uint8 `[..., H, W, 3]` arrays/tensors (0..255) or float tensors `[B, 3, T, H, W]`
/ `[3, T, H, W]` in [-1, 1] (the video tokenizer's layout). Both are mapped to [0, 1] before scoring so
numbers compare across layouts. `h264_reference` encodes the same frames with libx264 (through PyAV) at
the bits per pixel the tokenizer spends, so every tokenizer report sits beside a real codec.
"""

from __future__ import annotations

import io
import math
from fractions import Fraction

import av
import numpy as np
import torch
import torch.nn.functional as F


def _to_unit(x: torch.Tensor | np.ndarray) -> torch.Tensor:
    """Frames `[N, 3, H, W]` float64 in [0, 1] from uint8 channels-last or [-1, 1] channels-first video."""
    t = torch.from_numpy(np.asarray(x)) if isinstance(x, np.ndarray) else x.detach().cpu()
    if t.dtype == torch.uint8:
        if t.shape[-1] != 3:
            raise ValueError(f"uint8 video must end with 3 channels, got shape {tuple(t.shape)}")
        return t.reshape(-1, *t.shape[-3:]).permute(0, 3, 1, 2).double() / 255.0
    if t.ndim == 4:
        t = t[None]
    if t.ndim != 5 or t.shape[1] != 3:
        raise ValueError(
            f"float video must be [B, 3, T, H, W] or [3, T, H, W] in [-1, 1], got {tuple(t.shape)}"
        )
    t = (t.double().clamp(-1, 1) + 1) / 2
    return t.transpose(1, 2).reshape(-1, 3, *t.shape[-2:])


def _pair(a: torch.Tensor | np.ndarray, b: torch.Tensor | np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = _to_unit(a), _to_unit(b)
    if x.shape != y.shape:
        raise ValueError(f"videos differ in shape: {tuple(x.shape)} vs {tuple(y.shape)} (as [N, 3, H, W])")
    return x, y


def psnr(a: torch.Tensor | np.ndarray, b: torch.Tensor | np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB over the whole video (one MSE over all pixels); inf if equal."""
    x, y = _pair(a, b)
    mse = float((x - y).pow(2).mean())
    return math.inf if mse == 0 else 10 * math.log10(1.0 / mse)


def _gaussian_window(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    g = torch.exp(-((torch.arange(size, dtype=torch.float64) - size // 2) ** 2) / (2 * sigma**2))
    g = g / g.sum()
    return (g[:, None] * g[None, :]).expand(3, 1, size, size).contiguous()


def ssim(a: torch.Tensor | np.ndarray, b: torch.Tensor | np.ndarray) -> float:
    """Structural similarity (Wang et al. 2004): 11x11 gaussian window (sigma 1.5), per frame and channel,
    valid region only, averaged over frames; 1 for identical videos. Frames under 11 pixels use a
    window of their smaller side."""
    x, y = _pair(a, b)
    size = min(11, x.shape[-1], x.shape[-2])
    win = _gaussian_window(size, 1.5 * size / 11)
    c1, c2 = 0.01**2, 0.03**2

    def blur(z: torch.Tensor) -> torch.Tensor:
        return F.conv2d(z, win, groups=3)

    mx, my = blur(x), blur(y)
    sxx = blur(x * x) - mx * mx
    syy = blur(y * y) - my * my
    sxy = blur(x * y) - mx * my
    s = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx * mx + my * my + c1) * (sxx + syy + c2))
    return float(s.mean(dim=(1, 2, 3)).mean())


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
