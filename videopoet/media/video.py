"""Video and still images: read clips at a frame rate and size, write MP4 (H.264 + AAC) and PNG.

Clips are uint8 RGB arrays ``[T, H, W, 3]``; a still image is a 1-frame clip. Clips are resampled to the
requested frame rate by presentation time: output frame ``i`` is the source frame on screen at
``start_s + i / fps``.
"""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
import torch
import torch.nn.functional as F

from videopoet.media.audio import mono_float
from videopoet.media.container import (
    EPS_S,
    MediaError,
    NotEnoughFramesError,
    PathLike,
    create_media,
    decode_timed,
    first_stream,
    open_media,
)

# Resize at most this many frames at once (bounds the float32 copy of a long clip).
_RESIZE_CHUNK = 16


def _video_frame_rgb(frame: Any, shape: tuple[int, int] | None) -> np.ndarray:
    """RGB uint8 ``[H, W, 3]``; frames are scaled to ``shape`` (H, W) if the stream changes size."""
    if shape is None or (frame.height, frame.width) == shape:
        return frame.to_ndarray(format="rgb24")
    return frame.to_ndarray(format="rgb24", width=shape[1], height=shape[0])


def resize_center_crop(frames: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize uint8 ``[T, H, W, 3]`` frames to cover ``size`` = (H, W), then crop the center.

    The scale is ``max(H / h, W / w)``, so the aspect ratio is kept and nothing is padded. Resizing is
    bilinear with antialiasing, which matters when shrinking (no aliasing of fine texture).
    """
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must be [T, H, W, 3], got shape {tuple(frames.shape)}")
    out_h, out_w = int(size[0]), int(size[1])
    if out_h < 1 or out_w < 1:
        raise ValueError(f"size must be positive (H, W), got {size}")
    h, w = frames.shape[1:3]
    if (h, w) == (out_h, out_w):
        return frames
    scale = max(out_h / h, out_w / w)
    new_h, new_w = max(out_h, round(h * scale)), max(out_w, round(w * scale))
    top, left = (new_h - out_h) // 2, (new_w - out_w) // 2
    chunks = []
    for i in range(0, frames.shape[0], _RESIZE_CHUNK):
        x = torch.from_numpy(np.ascontiguousarray(frames[i : i + _RESIZE_CHUNK]))
        x = x.permute(0, 3, 1, 2).float()
        if (new_h, new_w) != (h, w):
            x = F.interpolate(x, size=(new_h, new_w), mode="bilinear", align_corners=False, antialias=True)
        x = x[:, :, top : top + out_h, left : left + out_w]
        chunks.append(x.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy())
    return np.concatenate(chunks, axis=0)


def read_clip(
    path: PathLike,
    start_s: float,
    num_frames: int,
    fps: float,
    size: tuple[int, int] | None = None,
    pad: bool = False,
) -> np.ndarray:
    """Read ``num_frames`` RGB frames at ``fps`` starting at ``start_s``: uint8 ``[T, H, W, 3]``.

    Output frame ``i`` is the source frame on screen at ``start_s + i / fps`` (the last one whose
    presentation time is <= that instant), so any source rate, including variable or unreported ones,
    maps correctly to the target rate. If the video ends before the clip does, raise
    `NotEnoughFramesError`, or with ``pad=True`` repeat the last frame. ``size=(H, W)`` resizes to
    cover and center-crops (`resize_center_crop`).
    """
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    if not fps > 0:
        raise ValueError(f"fps must be > 0, got {fps}")
    if start_s < 0:
        raise ValueError(f"start_s must be >= 0, got {start_s}")
    targets = [start_s + i / fps for i in range(num_frames)]
    out: list[np.ndarray] = []
    shape: tuple[int, int] | None = None
    prev: Any = None  # the frame on screen so far, and its RGB array once converted
    prev_rgb: np.ndarray | None = None
    last_t = last_dur = last_step = None
    for t, dur, frame in decode_timed(path, "video", start_s):
        while len(out) < num_frames and t > targets[len(out)] + EPS_S:
            if prev is None:  # wanted time is before the first frame: show the first frame
                prev, prev_rgb = frame, None
            if prev_rgb is None:
                prev_rgb = _video_frame_rgb(prev, shape)
                shape = shape or prev_rgb.shape[:2]
            out.append(prev_rgb)
        if len(out) == num_frames:
            break
        if last_t is not None and t > last_t:
            last_step = t - last_t
        if prev is not frame:
            prev, prev_rgb = frame, None
        last_t, last_dur = t, dur
    if len(out) < num_frames:
        if prev is None or last_t is None:
            raise NotEnoughFramesError(f"{path}: no video frames could be decoded")
        # The last frame stays on screen for its duration (or the typical frame interval).
        end = last_t + (last_dur or last_step or 0.0)
        available = len(out) + sum(1 for t in targets[len(out) :] if t < end - EPS_S)
        if available == 0 or (available < num_frames and not pad):
            raise NotEnoughFramesError(
                f"{path}: asked for {num_frames} frames at {fps:g} fps from {start_s:g} s, but the video "
                f"ends at {end:.3f} s so only {available} are available (pad=True repeats the last frame)"
            )
        if prev_rgb is None:
            prev_rgb = _video_frame_rgb(prev, shape)
        out.extend([prev_rgb] * (num_frames - len(out)))
    clip = np.stack(out)
    return resize_center_crop(clip, size) if size is not None else clip


def read_image(path: PathLike, size: tuple[int, int] | None = None) -> np.ndarray:
    """Read a still image (PNG, JPEG, ...) as a 1-frame clip: uint8 ``[1, H, W, 3]``.

    A video file gives its first frame. ``size=(H, W)`` resizes to cover and center-crops.
    """
    with open_media(path) as container:
        stream = first_stream(container, "video", path)
        image = None
        for frame in container.decode(stream):
            image = frame.to_ndarray(format="rgb24")[None]
            break
    if image is None:
        raise MediaError(f"{path}: no image could be decoded")
    return resize_center_crop(image, size) if size is not None else image


def write_video(
    path: PathLike,
    frames: np.ndarray,
    fps: float,
    audio: np.ndarray | None = None,
    sample_rate: int | None = None,
) -> None:
    """Write uint8 ``[T, H, W, 3]`` RGB frames as MP4 (H.264, yuv420p), with AAC mono audio if given.

    Odd heights or widths are padded by one repeated edge pixel, because 4:2:0 chroma needs even sizes.
    The output is deterministic: identical inputs give byte-identical files (single-threaded x264,
    bitexact muxing, no creation time).
    """
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.shape[0] < 1 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 [T, H, W, 3] with T >= 1, got {frames.dtype} {frames.shape}")
    if not fps > 0:
        raise ValueError(f"fps must be > 0, got {fps}")
    if audio is not None:
        audio = mono_float(audio, "audio")
        if not sample_rate or sample_rate < 1:
            raise ValueError("sample_rate is required with audio")
    h, w = frames.shape[1:3]
    if h % 2 or w % 2:
        frames = np.pad(frames, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), mode="edge")
    rate = Fraction(fps).limit_denominator(1001)

    with create_media(path, "mp4") as container:
        vstream = container.add_stream("libx264", rate=rate)
        vstream.width, vstream.height = frames.shape[2], frames.shape[1]
        vstream.pix_fmt = "yuv420p"
        vstream.codec_context.time_base = 1 / rate
        vstream.codec_context.thread_count = 1  # x264 output depends on its thread count
        vstream.options = {"crf": "18", "preset": "medium"}
        astream = None
        if audio is not None:
            astream = container.add_stream("aac", rate=sample_rate, layout="mono")
            astream.codec_context.time_base = Fraction(1, sample_rate)
        audio_pos = 0
        chunk = 1024
        for i, rgb in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
            frame.pts = i
            frame.time_base = vstream.codec_context.time_base
            container.mux(vstream.encode(frame))
            if astream is not None:  # interleave: audio up to the end of this video frame
                until = len(audio) if i == len(frames) - 1 else round((i + 1) / rate * sample_rate)
                while audio_pos < until:
                    piece = audio[audio_pos : min(audio_pos + chunk, until)]
                    aframe = av.AudioFrame.from_ndarray(piece[None, :], format="fltp", layout="mono")
                    aframe.sample_rate = sample_rate
                    aframe.pts = audio_pos
                    aframe.time_base = Fraction(1, sample_rate)
                    container.mux(astream.encode(aframe))
                    audio_pos += piece.shape[0]
        container.mux(vstream.encode(None))
        if astream is not None:
            container.mux(astream.encode(None))


def write_image(path: str | os.PathLike, frame: np.ndarray) -> None:
    """Write one uint8 RGB frame `[H, W, 3]` (or a 1-frame clip `[1, H, W, 3]`) as PNG."""
    frame = np.asarray(frame)
    if frame.ndim == 4 and frame.shape[0] == 1:
        frame = frame[0]
    if frame.ndim != 3 or frame.shape[-1] != 3 or frame.dtype != np.uint8:
        raise ValueError(f"write_image expects uint8 [H, W, 3], got {frame.dtype} {frame.shape}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w", format="image2") as container:
        stream = container.add_stream("png", rate=1)
        stream.width, stream.height, stream.pix_fmt = frame.shape[1], frame.shape[0], "rgb24"
        for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")):
            container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


