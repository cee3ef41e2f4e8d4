"""Media containers: open, probe and decode with PyAV, and the errors every media reader raises.

Times (``start_s``) are seconds from the start of the container (its ``start_time``), so video and
audio read with the same ``start_s`` stay in sync, and ``start_s=0`` is the first frame of a file whose
streams start together. Every problem a user can cause (missing path, broken or non-media file, missing
stream, a clip longer than the file) raises a `MediaError`, a `UserError` whose one-line message names
the file.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import av

from videopoet.errors import UserError

PathLike = str | os.PathLike

# File kinds by extension (lower case): what folders are searched for.
VIDEO_EXTENSIONS = (
    ".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".m2v", ".ts", ".mts", ".m2ts",
    ".ogv", ".flv", ".wmv", ".asf", ".3gp", ".3g2", ".dv", ".gif",
)  # fmt: skip
AUDIO_EXTENSIONS = (".wav", ".flac", ".mp3", ".m4a", ".aac", ".ogg", ".oga", ".opus", ".wma")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")

# Two times closer than this are the same instant (absorbs float error in pts * time_base and i / fps).
EPS_S = 1e-6
# Seek only when the clip starts this far into the file; before that, decoding from the start is cheap.
_SEEK_MIN_S = 2.0
# Seek this much before the wanted time, so the keyframe found is safely before it.
_SEEK_MARGIN_S = 1.0


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
def open_media(path: PathLike) -> Iterator[Any]:
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


def first_stream(container: Any, kind: str, path: PathLike) -> Any:
    streams = container.streams.video if kind == "video" else container.streams.audio
    if not streams:
        error = NoVideoStreamError if kind == "video" else NoAudioStreamError
        raise error(f"{path}: no {kind} stream")
    return streams[0]


def decode_timed(path: PathLike, kind: str, start_s: float) -> Iterator[tuple[float, float | None, Any]]:
    """Yield ``(time_s, duration_s, frame)`` for the first video or audio stream, in presentation order.

    Times are relative to the container start. When ``start_s`` is far into the file, seek to a keyframe
    a little before it, so that the first frame yielded is at or before ``start_s``; if the demuxer lands
    after it (imprecise seeking), start again from the beginning of the file.
    """
    try_seek = start_s > _SEEK_MIN_S
    while True:
        with open_media(path) as container:
            stream = first_stream(container, kind, path)
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
                    if t > start_s + EPS_S and not is_stream_start:
                        break  # landed past the wanted time: decode from the start instead
                first = False
                prev_end = t + dur if dur is not None else None
                yield t, dur, frame
            else:
                return
        try_seek = False



@contextmanager
def create_media(path: PathLike, fmt: str) -> Iterator[Any]:
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


def probe(path: PathLike) -> MediaInfo:
    """Container format, duration and video/audio streams of a media file, without decoding it."""
    with open_media(path) as container:
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
