"""The shapes oracle's reader: a shapes clip's color, shape, direction of motion and tone pitch, read back
from pixels and samples only (never file names or captions; `videopoet.eval.shapes` scores the readings).

Method (per frame, then pooled over the clip):

* background = the frame's per-channel median color; a pixel's contrast = its RGB distance from it;
* foreground = pixels whose contrast (3x3-smoothed) exceeds half the shape's typical contrast (90th
  percentile of the pixels above a noise floor), reduced to the largest 8-connected component, so noise
  specks and stray blobs are ignored; a frame with no such pixels has no foreground;
* color = the palette color nearest (RGB) to the median of the foreground's high-contrast core;
* shape = from the vertical skewness of the mass (a triangle with its apex up: -0.57; circle, square: 0)
  and the fill ratio of the bounding box (circle 0.785, square 1.0, triangle 0.5); majority vote over
  frames;
* direction = the larger axis of the centroid's least-squares displacement over the clip (image y grows
  downwards, so a decreasing y is "up"); None when it moves less than 10% of the canvas;
* pitch = the peak of the Hann-windowed, zero-padded spectrum (parabolic interpolation on the log
  magnitude), reported in Hz, and the shape whose tone is nearest in log frequency; None for silence.
"""

from __future__ import annotations

import math
import os
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from videopoet.data.synthetic import COLORS, PITCH_HZ
from videopoet.errors import UserError
from videopoet.metrics.audio import read_audio_pitch

__all__ = ["MEDIA_SUFFIXES", "ShapesReading", "analyze_file", "pitch_to_shape", "read_frames"]

ANALYSIS_SAMPLE_RATE = 16000
MEDIA_SUFFIXES = (".mp4", ".mkv", ".webm", ".mov", ".avi", ".wav", ".flac", ".ogg", ".mp3", ".m4a")

_NOISE_FLOOR = 48.0  # RGB distance (0..255 scale) below which a pixel is background
_MIN_PIXELS = 4  # fewer foreground pixels than this: no foreground in the frame
_MIN_TRAVEL = 0.10  # fraction of the canvas the centroid must travel to have a direction

# Shape decision: |vertical skewness| >= _TRIANGLE_SKEW is a triangle (apex up: ideal -0.57, circle and
# square: 0); otherwise the fill ratio of the bounding box splits square (1.0) from circle (0.785), and a
# low fill without skew still counts as a triangle (ideal 0.5).
# The square/circle split is set on what the oracle scores: clips decoded by a video tokenizer, whose
# squares come back with rounded corners. On the demo's 32x32 clips, per-frame fills of dataset circles
# are 0.72-0.86 and of squares 0.87-0.98; after a trained tokenizer's round trip, circles 0.72-0.90
# (median 0.81) and squares 0.80-1.0 (median 0.89-0.93). Per clip, 0.85-0.86 reads every shape right,
# both as rendered and round-tripped (160 clips through each of three demo tokenizers); 0.88, the midpoint
# for rendered shapes, read up to 3% of round-tripped clips and 21% of squares sampled for seen prompts
# as circles (0.855: 0.6%, and no circle as a square).
_TRIANGLE_SKEW = 0.2
_SQUARE_FILL = 0.855
_TRIANGLE_FILL = 0.64


@dataclass
class ShapesReading:
    """What the oracle read from one clip. Any attribute it could not read is None."""

    color: str | None = None
    shape: str | None = None
    direction: str | None = None
    pitch_hz: float | None = None
    pitch_shape: str | None = None
    has_video: bool = False
    has_audio: bool = False
    rgb: tuple[float, float, float] | None = None  # median foreground color measured
    foreground_frames: int = 0  # frames in which a foreground was found

    def to_dict(self) -> dict:
        d = asdict(self)
        if d["rgb"] is not None:
            d["rgb"] = [round(float(v), 1) for v in d["rgb"]]
        if d["pitch_hz"] is not None:
            d["pitch_hz"] = round(float(d["pitch_hz"]), 3)
        return d


# ----------------------------------------------------------------------------------------------- frames


def _largest_components(mask: np.ndarray) -> np.ndarray:
    """Per frame of ``mask`` [T, H, W], keep only its largest 8-connected component."""
    t, h, w = mask.shape
    if not mask.any():
        return mask
    ids = np.arange(1, t * h * w + 1, dtype=np.int64).reshape(t, h, w)
    labels = np.where(mask, ids, 0)
    # Max-label propagation; converges within the largest component's (graph) diameter.
    for _ in range(4 * (h + w) + 8):
        p = np.pad(labels, ((0, 0), (1, 1), (1, 1)))
        nb = labels
        for dy in (0, 1, 2):
            for dx in (0, 1, 2):
                if dy == 1 and dx == 1:
                    continue
                nb = np.maximum(nb, p[:, dy : dy + h, dx : dx + w])
        new = np.where(mask, nb, 0)
        if np.array_equal(new, labels):
            break
        labels = new
    out = np.zeros_like(mask)
    for i in range(t):
        fl = labels[i][mask[i]]
        if fl.size == 0:
            continue
        vals, counts = np.unique(fl, return_counts=True)
        out[i] = labels[i] == vals[np.argmax(counts)]
    return out


def _as_frames(frames) -> np.ndarray:
    arr = np.asarray(frames)
    if arr.ndim == 3:
        arr = arr[None]
    if arr.ndim != 4 or arr.shape[-1] != 3:
        raise UserError(f"shapes oracle: expected frames [T, H, W, 3], got shape {tuple(arr.shape)}")
    is_float = arr.dtype.kind == "f"
    arr = np.nan_to_num(arr.astype(np.float64))
    if is_float and arr.size and float(arr.max()) <= 1.0 + 1e-6:
        arr = arr * 255.0  # float frames in [0, 1]
    return arr


def _classify_shape(mask: np.ndarray) -> str | None:
    ys, xs = np.nonzero(mask)
    if ys.size < _MIN_PIXELS:
        return None
    h = ys.max() - ys.min() + 1
    w = xs.max() - xs.min() + 1
    fill = ys.size / float(h * w)
    yc = ys - ys.mean()
    sd = yc.std()
    skew = float((yc**3).mean() / sd**3) if sd > 0 else 0.0
    if abs(skew) >= _TRIANGLE_SKEW or fill < _TRIANGLE_FILL:
        return "triangle"
    return "square" if fill >= _SQUARE_FILL else "circle"


def _foreground(frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Foreground mask [T, H, W] (largest component per frame) and the per-pixel contrast [T, H, W]."""
    background = np.median(frames.reshape(frames.shape[0], -1, 3), axis=1)[:, None, None, :]
    contrast = np.linalg.norm(frames - background, axis=-1)
    # A 3x3 box filter on the contrast map evens out pixel noise before thresholding.
    h, w = contrast.shape[1:]
    padded = np.pad(contrast, ((0, 0), (1, 1), (1, 1)), mode="edge")
    contrast = sum(padded[:, dy : dy + h, dx : dx + w] for dy in range(3) for dx in range(3)) / 9.0
    mask = np.zeros(contrast.shape, dtype=bool)
    for i, c in enumerate(contrast):
        cand = c > _NOISE_FLOOR
        if cand.sum() < _MIN_PIXELS:
            continue
        peak = float(np.percentile(c[cand], 90))
        mask[i] = c > max(_NOISE_FLOOR, 0.5 * peak)
    mask = _largest_components(mask)
    mask &= mask.sum(axis=(1, 2), keepdims=True) >= _MIN_PIXELS
    return mask, contrast


def read_frames(frames) -> ShapesReading:
    """Read color, shape and direction from frames (uint8 ``[T, H, W, 3]``, or one ``[H, W, 3]`` frame).

    Float frames with values in [0, 1] are scaled to [0, 255]. The audio fields stay None.
    """
    arr = _as_frames(frames)
    reading = ShapesReading(has_video=True)
    if arr.shape[0] == 0:
        return reading
    mask, contrast = _foreground(arr)
    present = np.nonzero(mask.any(axis=(1, 2)))[0]
    reading.foreground_frames = int(present.size)
    if present.size == 0:
        return reading

    # Color: median of the high-contrast core of the foreground, pooled over frames.
    core_pixels = []
    for i in present:
        c = contrast[i][mask[i]]
        core = mask[i] & (contrast[i] >= np.percentile(c, 50))
        core_pixels.append(arr[i][core])
    rgb = np.median(np.concatenate(core_pixels, axis=0), axis=0)
    reading.rgb = (float(rgb[0]), float(rgb[1]), float(rgb[2]))
    palette = np.asarray(list(COLORS.values()), dtype=np.float64)
    reading.color = list(COLORS)[int(np.argmin(np.linalg.norm(palette - rgb, axis=1)))]

    # Shape: majority vote of per-frame classifications (ties: the first frame's order of appearance).
    votes = [s for s in (_classify_shape(mask[i]) for i in present) if s is not None]
    if votes:
        counts = Counter(votes)
        top = max(counts.values())
        reading.shape = next(s for s in votes if counts[s] == top)

    # Direction: least-squares centroid displacement over the clip, in canvas fractions.
    if present.size >= 2:
        h, w = arr.shape[1:3]
        cx, cy = [], []
        for i in present:
            ys, xs = np.nonzero(mask[i])
            cx.append(xs.mean() / w)
            cy.append(ys.mean() / h)
        t = present.astype(np.float64)
        span = t[-1] - t[0]
        dx = np.polyfit(t, np.asarray(cx), 1)[0] * span
        dy = np.polyfit(t, np.asarray(cy), 1)[0] * span
        if max(abs(dx), abs(dy)) >= _MIN_TRAVEL:
            if abs(dx) >= abs(dy):
                reading.direction = "right" if dx > 0 else "left"
            else:
                reading.direction = "down" if dy > 0 else "up"
    return reading


# ------------------------------------------------------------------------------------------------ audio


def pitch_to_shape(pitch_hz: float | None) -> str | None:
    """The shape whose tone (:data:`PITCH_HZ`) is nearest to ``pitch_hz`` in log frequency."""
    if pitch_hz is None or not pitch_hz > 0:
        return None
    return min(PITCH_HZ, key=lambda s: abs(math.log(pitch_hz / PITCH_HZ[s])))


# ------------------------------------------------------------------------------------------------- files


def analyze_file(path: str | os.PathLike) -> ShapesReading:
    """Read a media file: all its frames at its own frame rate, and its audio (none: pitch None)."""
    from videopoet import media as media_io

    p = Path(path)
    if not p.is_file():
        raise UserError(f"shapes oracle: file not found: {p}")
    info = media_io.probe(p)
    reading = ShapesReading()
    if info.video:
        v = info.video[0]
        rate = v.fps or getattr(v, "guessed_fps", None)
        fps = float(rate) if rate else None
        num_frames = int(v.num_frames) if v.num_frames else 0
        if not num_frames and fps and info.duration_s:
            num_frames = int(round(info.duration_s * fps))
        if num_frames > 0 and fps:
            frames = media_io.read_clip(p, 0.0, num_frames, fps, pad=True)
            reading = read_frames(frames)
        reading.has_video = True
    if info.audio:
        try:
            wav = media_io.read_audio(p, sample_rate=ANALYSIS_SAMPLE_RATE)
        except media_io.NoAudioStreamError:
            wav = None
        if wav is not None:
            reading.has_audio = True
            reading.pitch_hz = read_audio_pitch(wav, ANALYSIS_SAMPLE_RATE)
            reading.pitch_shape = pitch_to_shape(reading.pitch_hz)
    return reading
