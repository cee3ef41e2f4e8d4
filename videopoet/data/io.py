"""Media I/O: decode and encode video and audio with PyAV, resample audio with torchaudio.

Conventions (see DESIGN.md, "Media conventions"):

- video clips are uint8 RGB arrays ``[T, H, W, 3]``; a still image is a 1-frame clip;
- audio is a float32 mono waveform ``[N]`` in [-1, 1].

Times (``start_s``) are seconds from the start of the container (its ``start_time``), so video and
audio read with the same ``start_s`` stay in sync, and ``start_s=0`` is the first frame of a file whose
streams start together. Clips are resampled to the requested frame rate by presentation time: output
frame ``i`` is the source frame on screen at ``start_s + i / fps``.

Every problem a user can cause (missing path, broken or non-media file, missing stream, a clip longer
than the file) raises a `MediaError`, a `UserError` whose one-line message names the file.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
import torch
import torch.nn.functional as F
import torchaudio.functional as AF

from videopoet.errors import UserError

PathLike = str | os.PathLike

__all__ = [
    "AudioStreamInfo",
    "MediaError",
    "MediaInfo",
    "NoAudioStreamError",
    "NoVideoStreamError",
    "NotEnoughFramesError",
    "VideoStreamInfo",
    "probe",
    "read_audio",
    "read_clip",
    "read_image",
    "resize_center_crop",
    "write_audio",
    "write_video",
]

# Two times closer than this are the same instant (absorbs float error in pts * time_base and i / fps).
_EPS_S = 1e-6
# Seek only when the clip starts this far into the file; before that, decoding from the start is cheap.
_SEEK_MIN_S = 2.0
# Seek this much before the wanted time, so the keyframe found is safely before it.
_SEEK_MARGIN_S = 1.0
# Resize at most this many frames at once (bounds the float32 copy of a long clip).
_RESIZE_CHUNK = 16
_AUDIO_EXTENSIONS = {".wav": ("wav", "pcm_s16le"), ".flac": ("flac", "flac")}


class MediaError(UserError):
    """A media file is missing, unreadable, broken, not media, or lacks what was asked of it."""


class NoVideoStreamError(MediaError):
    """The file has no video stream."""


class NoAudioStreamError(MediaError):
    """The file has no audio stream."""


class NotEnoughFramesError(MediaError):
    """The file ends before the requested clip (video frames or audio samples) does."""


@dataclass
class VideoStreamInfo:
    """One video stream. ``fps`` is None when the container reports no frame rate."""

    index: int
    codec: str
    width: int
    height: int
    fps: float | None
    num_frames: int | None
    duration_s: float | None
    # FFmpeg's guess (from the codec or time base) where the container gives no rate; informative only.
    guessed_fps: float | None = None


@dataclass
class AudioStreamInfo:
    """One audio stream."""

    index: int
    codec: str
    sample_rate: int
    channels: int
    duration_s: float | None


@dataclass
class MediaInfo:
    """What `probe` found in a media file."""

    path: str
    container: str
    duration_s: float | None
    video: list[VideoStreamInfo] = field(default_factory=list)
    audio: list[AudioStreamInfo] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of built-in types, ready for ``json.dumps``."""
        return asdict(self)


# --------------------------------------------------------------------------------------------- helpers


def _reason(exc: BaseException) -> str:
    """FFmpeg's short description of an error, without the errno and file name PyAV adds."""
    text = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return " ".join(str(text).split())


def _check_readable(path: Path) -> None:
    if not path.exists():
        raise MediaError(f"{path}: no such file")
    if not path.is_file():
        raise MediaError(f"{path}: not a regular file")
    if path.stat().st_size == 0:
        raise MediaError(f"{path}: empty file (0 bytes), not a media file")


@contextmanager
def _open(path: PathLike) -> Iterator[Any]:
    """Open a media file for reading; every FFmpeg or OS error becomes a one-line `MediaError`."""
    p = Path(path)
    _check_readable(p)
    try:
        container = av.open(str(p), mode="r")
    except (av.FFmpegError, OSError) as exc:
        raise MediaError(
            f"{p}: cannot open as media: {_reason(exc)} (broken, truncated or not a media file)"
        ) from exc
    try:
        if not container.streams.video and not container.streams.audio:
            raise MediaError(f"{p}: no video or audio stream (not a media file)")
        yield container
    except (av.FFmpegError, OSError) as exc:
        raise MediaError(f"{p}: broken media file, decoding failed: {_reason(exc)}") from exc
    finally:
        container.close()


def _origin_s(container: Any) -> float:
    """Time of the container's start, the zero of ``start_s``."""
    return container.start_time / av.time_base if container.start_time is not None else 0.0


def _rate(value: Any) -> float | None:
    return float(value) if value else None


def _stream_duration_s(stream: Any, container: Any) -> float | None:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / av.time_base
    return None


def _stream(container: Any, kind: str, path: PathLike) -> Any:
    streams = container.streams.video if kind == "video" else container.streams.audio
    if not streams:
        error = NoVideoStreamError if kind == "video" else NoAudioStreamError
        raise error(f"{path}: no {kind} stream")
    return streams[0]


def _decode_timed(path: PathLike, kind: str, start_s: float) -> Iterator[tuple[float, float | None, Any]]:
    """Yield ``(time_s, duration_s, frame)`` for the first video or audio stream, in presentation order.

    Times are relative to the container start. When ``start_s`` is far into the file, seek to a keyframe
    a little before it, so that the first frame yielded is at or before ``start_s``; if the demuxer lands
    after it (imprecise seeking), start again from the beginning of the file.
    """
    try_seek = start_s > _SEEK_MIN_S
    while True:
        with _open(path) as container:
            stream = _stream(container, kind, path)
            if kind == "video":
                stream.thread_type = "AUTO"
            origin = _origin_s(container)
            seeked = False
            if try_seek and stream.time_base is not None:
                offset = int((origin + start_s - _SEEK_MARGIN_S) / stream.time_base)
                container.seek(offset, stream=stream, backward=True, any_frame=False)
                seeked = True
            prev_end: float | None = None
            first = True
            for frame in container.decode(stream):
                time_base = frame.time_base or stream.time_base
                if frame.pts is not None and time_base is not None:
                    t = float(frame.pts * time_base) - origin
                else:
                    t = prev_end if prev_end is not None else 0.0
                if kind == "audio":
                    dur: float | None = frame.samples / frame.sample_rate
                else:
                    dur = float(frame.duration * time_base) if frame.duration and time_base else None
                if first and seeked:
                    first = False
                    is_stream_start = stream.start_time is not None and frame.pts == stream.start_time
                    if t > start_s + _EPS_S and not is_stream_start:
                        break  # landed past the wanted time: decode from the start instead
                first = False
                prev_end = t + dur if dur is not None else None
                yield t, dur, frame
            else:
                return
        try_seek = False


def _video_frame_rgb(frame: Any, shape: tuple[int, int] | None) -> np.ndarray:
    """RGB uint8 ``[H, W, 3]``; frames are scaled to ``shape`` (H, W) if the stream changes size."""
    if shape is None or (frame.height, frame.width) == shape:
        return frame.to_ndarray(format="rgb24")
    return frame.to_ndarray(format="rgb24", width=shape[1], height=shape[0])


# ------------------------------------------------------------------------------------------------ probe


def probe(path: PathLike) -> MediaInfo:
    """Container format, duration and video/audio streams of a media file, without decoding it."""
    with _open(path) as container:
        video = [
            VideoStreamInfo(
                index=s.index,
                codec=s.codec_context.name,
                width=s.codec_context.width,
                height=s.codec_context.height,
                fps=_rate(s.average_rate),
                num_frames=s.frames or None,
                duration_s=_stream_duration_s(s, container),
                guessed_fps=_rate(s.guessed_rate),
            )
            for s in container.streams.video
        ]
        audio = [
            AudioStreamInfo(
                index=s.index,
                codec=s.codec_context.name,
                sample_rate=s.codec_context.sample_rate,
                channels=s.codec_context.layout.nb_channels,
                duration_s=_stream_duration_s(s, container),
            )
            for s in container.streams.audio
        ]
        duration = container.duration / av.time_base if container.duration is not None else None
        return MediaInfo(str(path), container.format.name, duration, video, audio)


# ---------------------------------------------------------------------------------------------- video


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
    for t, dur, frame in _decode_timed(path, "video", start_s):
        while len(out) < num_frames and t > targets[len(out)] + _EPS_S:
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
        available = len(out) + sum(1 for t in targets[len(out) :] if t < end - _EPS_S)
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
    with _open(path) as container:
        stream = _stream(container, "video", path)
        image = None
        for frame in container.decode(stream):
            image = frame.to_ndarray(format="rgb24")[None]
            break
    if image is None:
        raise MediaError(f"{path}: no image could be decoded")
    return resize_center_crop(image, size) if size is not None else image


# ---------------------------------------------------------------------------------------------- audio


def read_audio(
    path: PathLike,
    start_s: float = 0.0,
    duration_s: float | None = None,
    sample_rate: int = 16000,
    pad: bool = False,
) -> np.ndarray:
    """Read the first audio stream as float32 mono ``[N]`` in [-1, 1] at ``sample_rate``.

    Channels are averaged, then resampled with ``torchaudio.functional.resample``. With ``duration_s``,
    exactly ``round(duration_s * sample_rate)`` samples are returned; if the file ends first, raise
    `NotEnoughFramesError`, or with ``pad=True`` pad with silence. Without it, read to the end.
    """
    if start_s < 0:
        raise ValueError(f"start_s must be >= 0, got {start_s}")
    if duration_s is not None and duration_s < 0:
        raise ValueError(f"duration_s must be >= 0, got {duration_s}")
    if sample_rate < 1:
        raise ValueError(f"sample_rate must be >= 1, got {sample_rate}")

    # Decode to mono float32 at the source rate; `seg` starts at time `seg_t0`.
    pieces: list[np.ndarray] = []
    seg_t0: float | None = None
    rate = 0
    have = 0
    resampler = None
    for t, _dur, frame in _decode_timed(path, "audio", start_s):
        if resampler is None or frame.sample_rate != rate:
            if resampler is not None:
                break  # the rate changed mid-stream; keep what we have rather than mix rates
            rate = frame.sample_rate
            seg_t0 = t
            resampler = av.AudioResampler(format="fltp", rate=rate)
        for converted in resampler.resample(frame):
            mono = converted.to_ndarray().astype(np.float32, copy=False).mean(axis=0)
            pieces.append(mono)
            have += mono.shape[0]
        if duration_s is not None and seg_t0 + have / rate > start_s + duration_s + 0.1:
            break  # enough (0.1 s is margin for the resampling filter)
    if resampler is not None:
        for converted in resampler.resample(None):
            pieces.append(converted.to_ndarray().astype(np.float32, copy=False).mean(axis=0))
    if seg_t0 is None or not pieces:
        raise NotEnoughFramesError(f"{path}: no audio samples could be decoded")
    seg = np.concatenate(pieces)

    # Sample index of start_s in `seg`; audio that starts after start_s is preceded by silence.
    start = round((start_s - seg_t0) * rate)
    if start < 0:
        seg = np.concatenate([np.zeros(-start, np.float32), seg])
        start = 0
    available_s = (seg.shape[0] - start) / rate
    if duration_s is None:
        if available_s <= 0:
            raise NotEnoughFramesError(f"{path}: start {start_s:g} s is past the end of the audio")
        duration_s = available_s
    elif duration_s > available_s + 1.0 / sample_rate and not pad:
        raise NotEnoughFramesError(
            f"{path}: asked for {duration_s:g} s of audio from {start_s:g} s, but only "
            f"{max(available_s, 0.0):.3f} s are available (pad=True pads with silence)"
        )
    n_out = round(duration_s * sample_rate)

    # Resample the needed span plus a margin on each side, so the filter sees real neighbours.
    margin = max(64, math.ceil(32 * rate / sample_rate))
    lo = max(0, start - margin)
    hi = min(seg.shape[0], start + math.ceil(n_out * rate / sample_rate) + margin)
    x = seg[lo:hi]
    if rate != sample_rate and x.shape[0] > 0:
        x = AF.resample(torch.from_numpy(np.ascontiguousarray(x)), rate, sample_rate).numpy()
    offset = round((start - lo) * sample_rate / rate)
    wav = x[offset : offset + n_out]
    if wav.shape[0] < n_out:
        wav = np.concatenate([wav, np.zeros(n_out - wav.shape[0], np.float32)])
    return np.clip(wav, -1.0, 1.0).astype(np.float32, copy=False)


# --------------------------------------------------------------------------------------------- writing


@contextmanager
def _create(path: PathLike, fmt: str) -> Iterator[Any]:
    """Open an output container (making parent folders); write errors become `MediaError`."""
    p = Path(path)
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        # bitexact: no encoder version strings or timestamps that would make identical inputs differ.
        container = av.open(str(p), mode="w", format=fmt, options={"fflags": "+bitexact"})
    except (av.FFmpegError, OSError) as exc:
        raise MediaError(f"{p}: cannot write: {_reason(exc)}") from exc
    try:
        yield container
    except (av.FFmpegError, OSError) as exc:
        raise MediaError(f"{p}: cannot write: {_reason(exc)}") from exc
    finally:
        container.close()


def _mono_float(wav: np.ndarray, what: str) -> np.ndarray:
    wav = np.asarray(wav)
    if wav.ndim != 1:
        raise ValueError(f"{what} must be mono [N], got shape {tuple(wav.shape)}")
    return np.clip(np.nan_to_num(wav.astype(np.float32, copy=False)), -1.0, 1.0)


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
        audio = _mono_float(audio, "audio")
        if not sample_rate or sample_rate < 1:
            raise ValueError("sample_rate is required with audio")
    h, w = frames.shape[1:3]
    if h % 2 or w % 2:
        frames = np.pad(frames, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), mode="edge")
    rate = Fraction(fps).limit_denominator(1001)

    with _create(path, "mp4") as container:
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


def write_audio(path: PathLike, wav: np.ndarray, sample_rate: int) -> None:
    """Write a float32 mono waveform in [-1, 1] as 16-bit WAV or FLAC, chosen by the file extension."""
    ext = Path(path).suffix.lower()
    if ext not in _AUDIO_EXTENSIONS:
        raise MediaError(f"{path}: unsupported audio extension '{ext}' (use .wav or .flac)")
    if sample_rate < 1:
        raise ValueError(f"sample_rate must be >= 1, got {sample_rate}")
    samples = np.round(_mono_float(wav, "wav") * 32767.0).astype(np.int16)
    fmt, codec = _AUDIO_EXTENSIONS[ext]
    with _create(path, fmt) as container:
        stream = container.add_stream(codec, rate=sample_rate, layout="mono")
        stream.format = "s16"
        stream.codec_context.time_base = Fraction(1, sample_rate)
        step = sample_rate  # one second per frame; the encoder regroups into its own frame size
        for pos in range(0, samples.shape[0], step):
            frame = av.AudioFrame.from_ndarray(samples[None, pos : pos + step], format="s16", layout="mono")
            frame.sample_rate = sample_rate
            frame.pts = pos
            frame.time_base = Fraction(1, sample_rate)
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
