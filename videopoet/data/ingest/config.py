"""Ingest settings, the extensions and column names it recognises, and the rows it writes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from videopoet.errors import UserError
from videopoet.media import AUDIO_EXTENSIONS, VIDEO_EXTENSIONS  # noqa: F401 (re-exported)

DATA_EXTENSIONS = {".csv": "csv", ".json": "json", ".jsonl": "json", ".parquet": "parquet"}
MEDIA_COLUMNS = ("video", "path", "file", "file_name", "filepath", "video_path", "media")
CAPTION_COLUMNS = ("caption", "text", "description", "prompt")
KEY_COLUMNS = ("file_name", "file", "path", "video", "name")
AUTO_CAPTION_FILES = ("captions.jsonl", "captions.csv", "metadata.jsonl", "metadata.csv")

CLIPS, FILES, REPORT, MEDIA = "clips", "files", "report.json", "media"
# Audio may end this much before the clip and still count (AAC priming and muxing leave such gaps).
AUDIO_SLACK_S = 0.1
EPS_S = 1e-6


def clip_features() -> Any:
    import datasets

    return datasets.Features(
        {
            "clip_id": datasets.Value("string"),
            "source": datasets.Value("string"),
            "start_s": datasets.Value("float64"),
            "fps": datasets.Value("float64"),
            "num_frames": datasets.Value("int32"),
            "width": datasets.Value("int32"),
            "height": datasets.Value("int32"),
            "has_audio": datasets.Value("bool"),
            "caption": datasets.Value("string"),
            "split": datasets.Value("string"),
        }
    )


def file_features() -> Any:
    import datasets

    return datasets.Features(
        {
            "key": datasets.Value("string"),
            "source": datasets.Value("string"),
            "size": datasets.Value("int64"),
            "mtime_ns": datasets.Value("int64"),
            "caption": datasets.Value("string"),
            "split": datasets.Value("string"),
            "status": datasets.Value("string"),  # "ingested" or "skipped"
            "reason": datasets.Value("string"),  # skip reason code, or None
            "detail": datasets.Value("string"),  # the message, or a note on an ingested file
            "clips": datasets.Value("int32"),
        }
    )


@dataclass
class IngestConfig:
    """How files are cut into clips (project config section ``ingest``)."""

    fps: float = 8.0
    frames: int = 17
    size: tuple[int, int] | None = None  # (H, W) of the output clips; None keeps the source size
    stride_s: float | None = None  # seconds between clip starts; None: frames / fps (back to back)
    min_seconds: float = 0.0  # skip files shorter than this
    num_proc: int = 1  # processes probing files in parallel
    media_column: str | None = None  # dataset sources: column of media paths (None: auto-detect)
    caption_column: str | None = None  # dataset sources: column of captions (None: auto-detect)

    def __post_init__(self) -> None:
        if not self.fps > 0 or self.frames < 1:
            raise ValueError(f"fps must be > 0 and frames >= 1, got fps={self.fps}, frames={self.frames}")
        if self.size is not None:
            self.size = (int(self.size[0]), int(self.size[1]))
            if min(self.size) < 1:
                raise ValueError(f"size must be positive (H, W), got {self.size}")
        if self.stride_s is not None and not self.stride_s > 0:
            raise ValueError(f"stride_s must be > 0, got {self.stride_s}")
        if self.min_seconds < 0 or self.num_proc < 1:
            raise ValueError("min_seconds must be >= 0 and num_proc >= 1")

    @property
    def clip_seconds(self) -> float:
        return self.frames / self.fps

    def settings(self) -> dict[str, Any]:
        """The settings that shape the clip rows (a re-run must use the same)."""
        return {
            "fps": self.fps,
            "frames": self.frames,
            "size": list(self.size) if self.size else None,
            "stride_s": self.stride_s,
            "min_seconds": self.min_seconds,
        }


@dataclass
class Job:
    """One source file to process (picklable for the worker pool)."""

    key: str
    path: str
    caption: str | None
    split: str | None
    size: int
    mtime_ns: int
    problem: str | None = None  # a reason to skip found while listing (a file name that is not UTF-8)

    def record(self, status: str, reason: str | None, detail: str | None, clips: int) -> dict[str, Any]:
        return {
            "key": self.key, "source": self.path, "size": self.size, "mtime_ns": self.mtime_ns,
            "caption": self.caption, "split": self.split, "status": status, "reason": reason,
            "detail": detail, "clips": clips,
        }  # fmt: skip


class Skip(UserError):
    """A file that cannot be ingested (a reason code and FFmpeg's message): recorded as a skip in the
    report, never raised out of `ingest`."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason, self.detail = reason, detail
