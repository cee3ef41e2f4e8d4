"""One source file -> its clips: probe, find the end, verify the first and last frames (runs in workers)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from videopoet.data.ingest.config import (
    AUDIO_SLACK_S,
    EPS_S,
    IngestConfig,
    Job,
    Skip,
)


def clip_starts(duration_s: float, config: IngestConfig) -> list[float]:
    """Start times of the clips that lie wholly within ``duration_s`` seconds."""
    stride = config.stride_s or config.clip_seconds
    count = math.floor((duration_s - config.clip_seconds + EPS_S) / stride) + 1
    return [round(k * stride, 6) for k in range(max(count, 0))]


def _scan_end_s(path: str) -> float | None:
    """End of the video from its packets' timestamps (no decoding); None when there are none."""
    import av

    end = None
    try:
        with av.open(path) as container:
            stream = container.streams.video[0]
            origin = container.start_time / av.time_base if container.start_time is not None else 0.0
            for packet in container.demux(stream):
                if packet.pts is None or packet.time_base is None:
                    continue
                t = float((packet.pts + (packet.duration or 0)) * packet.time_base) - origin
                end = t if end is None else max(end, t)
    except (av.FFmpegError, OSError, IndexError):
        pass  # keep what the packets before the damage told
    return end


def _verify(path: str, t: float, config: IngestConfig) -> None:
    """Decode the frame on screen at ``t`` (raises MediaError when it cannot)."""
    from videopoet import media as media_io

    media_io.read_clip(path, t, 1, config.fps)


def _cut(job: Job, config: IngestConfig) -> tuple[list[dict[str, Any]], str | None]:
    """Probe, cut and spot-check one file: its clip rows and a note (or raise `Skip`)."""
    from videopoet import media as media_io

    if job.problem:
        raise Skip("bad_name", job.problem)
    if not job.path or not Path(job.path).is_file():
        raise Skip("missing", f"{job.path or job.key}: no such file")
    if job.size == 0:
        raise Skip("empty", f"{job.path}: empty file (0 bytes)")
    try:
        info = media_io.probe(job.path)
    except media_io.MediaError as e:
        raise Skip("unreadable", str(e)) from None
    if not info.video:
        audio_only = " (audio only)" if info.audio else ""
        raise Skip("no_video_stream", f"{job.path}: no video stream{audio_only}")
    video = info.video[0]
    if not video.width or not video.height:
        raise Skip("no_frame_size", f"{job.path}: the video stream reports no frame size")
    notes = []
    if video.fps is None:
        notes.append("no frame rate in the container; cut by timestamps")
    duration = video.duration_s or info.duration_s
    if not duration:
        duration = _scan_end_s(job.path)
        notes.append("no duration in the container; measured from packet timestamps")
        if not duration:
            raise Skip("no_duration", f"{job.path}: neither the container nor its packets tell the duration")
    if duration < config.min_seconds:
        raise Skip(
            "too_short", f"{job.path}: {duration:.3f} s, shorter than min_seconds={config.min_seconds:g}"
        )
    starts = clip_starts(duration, config)
    if not starts:
        raise Skip(
            "too_short",
            f"{job.path}: {duration:.3f} s, shorter than one clip ({config.frames} frames at "
            f"{config.fps:g} fps = {config.clip_seconds:g} s)",
        )
    try:
        _verify(job.path, starts[0], config)
    except media_io.MediaError as e:
        raise Skip("undecodable", str(e)) from None
    last = config.frames - 1
    try:
        _verify(job.path, starts[-1] + last / config.fps, config)
    except media_io.MediaError:
        end = _scan_end_s(job.path)
        starts = clip_starts(min(end or 0.0, duration), config)
        try:
            if not starts:
                raise media_io.MediaError("nothing decodable")
            _verify(job.path, starts[-1] + last / config.fps, config)
        except media_io.MediaError as e:
            raise Skip(
                "undecodable",
                f"{job.path}: broken or truncated; the header says {duration:.3f} s but no whole clip "
                f"could be decoded ({e})",
            ) from None
        notes.append(f"truncated: header says {duration:.3f} s, packets end at {end:.3f} s")
    audio = info.audio[0] if info.audio else None
    audio_end = (audio.duration_s or info.duration_s) if audio else None
    h, w = config.size or (video.height, video.width)
    rows = [
        {
            "clip_id": f"{job.key}#{s:.3f}",
            "source": job.path,
            "start_s": s,
            "fps": float(config.fps),
            "num_frames": config.frames,
            "width": w,
            "height": h,
            "has_audio": audio is not None
            and (audio_end is None or s + config.clip_seconds <= audio_end + AUDIO_SLACK_S),
            "caption": job.caption,
            "split": job.split,
        }
        for s in starts
    ]
    return rows, "; ".join(notes) or None


def process_file(args: tuple[Job, IngestConfig]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A file's record and clip rows; never raises (a failure is a skip with reason ``error``)."""
    job, config = args
    try:
        rows, note = _cut(job, config)
        return job.record("ingested", None, note, len(rows)), rows
    except Skip as s:
        return job.record("skipped", s.reason, s.detail, 0), []
    except Exception as e:  # a bug or an FFmpeg surprise must not stop the run
        return job.record("skipped", "error", f"{job.path}: {type(e).__name__}: {e}", 0), []


def init_worker() -> None:
    import torch

    torch.set_num_threads(1)
