"""Media folder or Hugging Face dataset -> clip index (a `datasets` dataset on disk).

``ingest(src, out, config)`` probes every media file of ``src`` with PyAV and cuts it into clips of
``config.frames`` frames at ``config.fps``; it never decodes whole files. Output folder ``out``:

- ``clips/``: the clip index (``datasets.load_from_disk``), one row per clip: ``clip_id`` (``KEY#START``,
  e.g. ``video/a.mp4#2.125``, stable across runs), ``source`` (absolute path), ``start_s``, ``fps``,
  ``num_frames``, ``width``, ``height`` (of the output clip: ``config.size`` or the source size),
  ``has_audio``, ``caption`` (str or None) and ``split`` (str or None, copied from a caption mapping or
  dataset column named ``split``; the shapes dataset uses it to keep its held-out combinations apart);
- ``files/``: one row per source file seen (key, size, mtime, caption, outcome), so a re-run only
  processes files that are new or changed (size, mtime or caption), drops rows of files that are gone,
  and keeps the rest;
- ``report.json``: files seen, ingested and skipped (ingested + skipped == seen, always), clips, each
  skipped file with a reason code and FFmpeg's message, and the settings (a re-run with other clip
  settings is refused: the old rows would not match).

Sources (``src``):

- a folder, searched recursively for ``VIDEO_EXTENSIONS`` and ``AUDIO_EXTENSIONS`` (case-insensitive;
  audio-only files are listed so that the report says why they were skipped, rather than silently
  ignored; still images are not ingested). Keys are paths relative to the folder;
- a dataset saved with ``save_to_disk`` (a ``Dataset`` or ``DatasetDict``; a split's name fills ``split``)
  or a ``.csv``, ``.json``, ``.jsonl`` or ``.parquet`` file read with ``datasets.load_dataset``, with a
  column of media paths (``media_column``, else the first of ``MEDIA_COLUMNS``; a ``Video``/``Image``
  feature is read as its path) and optionally captions (``caption_column``, else the first of
  ``CAPTION_COLUMNS``). Relative paths are resolved against the data file's folder (a saved dataset's
  parent folder), else the working directory. Keys are the paths as written. Media embedded in the
  dataset as bytes (``save_to_disk`` of a ``Video`` feature embeds its files) are written once to
  ``out/media/`` (named by a hash of their content; key ``embedded/HASH/NAME``);
- a single media file.

Captions, the first found of: the ``captions`` mapping file, the dataset's caption column, a sidecar
``NAME.txt`` beside the media file, and for folders a ``captions.jsonl``, ``captions.csv``,
``metadata.jsonl`` or ``metadata.csv`` at the folder's root (the Hugging Face folder convention). A
mapping file (JSONL, CSV, or a JSON object key -> caption) is keyed by relative path or file name
(column ``file_name``, ``file``, ``path``, ``video`` or ``name``; caption column as above). Files without
a caption are kept: tasks that need no text can use them.

Clips start at 0, ``stride_s`` apart (default: back to back, ``frames / fps``), and must lie wholly in the
video: a file shorter than one clip (or than ``min_seconds``) is skipped as ``too_short``. The source
frame rate is not needed: clips are read by presentation time (`io.read_clip`), so a container that
reports none (Theora in Ogg) is cut by its duration, or by its packets' timestamps when it has no
duration either. Each file's first clip's first frame and last clip's last frame are decoded; when the
last fails (a truncated file whose header promises more), the end is measured from the packets that are
there and the clips recut. A clip ``has_audio`` when the file has an audio stream that covers the clip
(within 0.1 s; the tokenizer pads the rest with silence).

One bad file never stops the run: every failure is recorded as a skip (reason codes: ``missing``,
``empty``, ``unreadable``, ``no_video_stream``, ``no_frame_size``, ``no_duration``, ``too_short``,
``undecodable``, ``bad_name`` (not UTF-8), ``error`` (an unexpected exception; its message says which)).
A decoder that crashes its process (a segfault in FFmpeg) is not caught: run with ``num_proc=1`` to find
the file, then move it away.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import multiprocessing as mp
import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from videopoet.errors import UserError

__all__ = [
    "AUDIO_EXTENSIONS",
    "CAPTION_COLUMNS",
    "IngestConfig",
    "MEDIA_COLUMNS",
    "VIDEO_EXTENSIONS",
    "clip_starts",
    "ingest",
    "load_clip_index",
]

VIDEO_EXTENSIONS = (
    ".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".m2v", ".ts", ".mts", ".m2ts",
    ".ogv", ".flv", ".wmv", ".asf", ".3gp", ".3g2", ".dv", ".gif",
)  # fmt: skip
AUDIO_EXTENSIONS = (".wav", ".flac", ".mp3", ".m4a", ".aac", ".ogg", ".oga", ".opus", ".wma")
DATA_EXTENSIONS = {".csv": "csv", ".json": "json", ".jsonl": "json", ".parquet": "parquet"}
MEDIA_COLUMNS = ("video", "path", "file", "file_name", "filepath", "video_path", "media")
CAPTION_COLUMNS = ("caption", "text", "description", "prompt")
KEY_COLUMNS = ("file_name", "file", "path", "video", "name")
AUTO_CAPTION_FILES = ("captions.jsonl", "captions.csv", "metadata.jsonl", "metadata.csv")

CLIPS, FILES, REPORT, MEDIA = "clips", "files", "report.json", "media"
# Audio may end this much before the clip and still count (AAC priming and muxing leave such gaps).
_AUDIO_SLACK_S = 0.1
_EPS_S = 1e-6


def _clip_features() -> Any:
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


def _file_features() -> Any:
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
class _Job:
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


class _Skip(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason, self.detail = reason, detail


# ------------------------------------------------------------------------------------ one file (worker)


def clip_starts(duration_s: float, config: IngestConfig) -> list[float]:
    """Start times of the clips that lie wholly within ``duration_s`` seconds."""
    stride = config.stride_s or config.clip_seconds
    count = math.floor((duration_s - config.clip_seconds + _EPS_S) / stride) + 1
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
    from videopoet.data import io as media_io

    media_io.read_clip(path, t, 1, config.fps)


def _cut(job: _Job, config: IngestConfig) -> tuple[list[dict[str, Any]], str | None]:
    """Probe, cut and spot-check one file: its clip rows and a note (or raise `_Skip`)."""
    from videopoet.data import io as media_io

    if job.problem:
        raise _Skip("bad_name", job.problem)
    if not job.path or not Path(job.path).is_file():
        raise _Skip("missing", f"{job.path or job.key}: no such file")
    if job.size == 0:
        raise _Skip("empty", f"{job.path}: empty file (0 bytes)")
    try:
        info = media_io.probe(job.path)
    except media_io.MediaError as e:
        raise _Skip("unreadable", str(e)) from None
    if not info.video:
        audio_only = " (audio only)" if info.audio else ""
        raise _Skip("no_video_stream", f"{job.path}: no video stream{audio_only}")
    video = info.video[0]
    if not video.width or not video.height:
        raise _Skip("no_frame_size", f"{job.path}: the video stream reports no frame size")
    notes = []
    if video.fps is None:
        notes.append("no frame rate in the container; cut by timestamps")
    duration = video.duration_s or info.duration_s
    if not duration:
        duration = _scan_end_s(job.path)
        notes.append("no duration in the container; measured from packet timestamps")
        if not duration:
            raise _Skip("no_duration", f"{job.path}: neither the container nor its packets tell the duration")
    if duration < config.min_seconds:
        raise _Skip(
            "too_short", f"{job.path}: {duration:.3f} s, shorter than min_seconds={config.min_seconds:g}"
        )
    starts = clip_starts(duration, config)
    if not starts:
        raise _Skip(
            "too_short",
            f"{job.path}: {duration:.3f} s, shorter than one clip ({config.frames} frames at "
            f"{config.fps:g} fps = {config.clip_seconds:g} s)",
        )
    try:
        _verify(job.path, starts[0], config)
    except media_io.MediaError as e:
        raise _Skip("undecodable", str(e)) from None
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
            raise _Skip(
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
            and (audio_end is None or s + config.clip_seconds <= audio_end + _AUDIO_SLACK_S),
            "caption": job.caption,
            "split": job.split,
        }
        for s in starts
    ]
    return rows, "; ".join(notes) or None


def _process(args: tuple[_Job, IngestConfig]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A file's record and clip rows; never raises (a failure is a skip with reason ``error``)."""
    job, config = args
    try:
        rows, note = _cut(job, config)
        return job.record("ingested", None, note, len(rows)), rows
    except _Skip as s:
        return job.record("skipped", s.reason, s.detail, 0), []
    except Exception as e:  # a bug or an FFmpeg surprise must not stop the run
        return job.record("skipped", "error", f"{job.path}: {type(e).__name__}: {e}", 0), []


def _init_worker() -> None:
    import torch

    torch.set_num_threads(1)


# ------------------------------------------------------------------------------------------- sources


def _media_files(root: Path) -> Iterator[Path]:
    exts = set(VIDEO_EXTENSIONS) | set(AUDIO_EXTENSIONS)
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if not name.startswith(".") and os.path.splitext(name)[1].lower() in exts:
                yield Path(dirpath) / name


def _pick(
    columns: list[str], wanted: str | None, candidates: tuple[str, ...], what: str, where: str
) -> str | None:
    if wanted is not None:
        if wanted not in columns:
            raise UserError(f"{where}: no column {wanted!r} for {what}; columns: {', '.join(columns)}")
        return wanted
    lowered = {c.lower(): c for c in columns}
    return next((lowered[c] for c in candidates if c in lowered), None)


def _read_table(path: Path) -> list[dict[str, Any]]:
    """Rows of a JSONL, CSV or JSON (list of objects, or object key -> caption) file."""
    try:
        if path.suffix.lower() == ".csv":
            with path.open(newline="", encoding="utf-8") as f:
                return list(csv.DictReader(f))
        text = path.read_text(encoding="utf-8")
        if path.suffix.lower() == ".json":
            data = json.loads(text)
            if isinstance(data, dict):
                return [{"file": k, "caption": v} for k, v in data.items()]
            return list(data)
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    except (OSError, ValueError, UnicodeDecodeError) as e:
        raise UserError(f"cannot read captions file {path}: {e}") from None


def _caption_map(path: Path) -> dict[str, tuple[str | None, str | None]]:
    """key (relative path or file name) -> (caption, split) from a captions mapping file."""
    rows = [r for r in _read_table(path) if isinstance(r, dict)]
    columns = list(rows[0]) if rows else []
    key_col = _pick(columns, None, KEY_COLUMNS, "file names", str(path))
    cap_col = _pick(columns, None, CAPTION_COLUMNS, "captions", str(path))
    if rows and (key_col is None or cap_col is None):
        raise UserError(
            f"captions file {path} needs a file column ({', '.join(KEY_COLUMNS)}) and a caption column "
            f"({', '.join(CAPTION_COLUMNS)}); it has: {', '.join(columns)}"
        )
    mapping: dict[str, tuple[str | None, str | None]] = {}
    for r in rows:
        key = str(r.get(key_col) or "").replace("\\", "/").removeprefix("./")
        if not key:
            continue
        value = (_clean(r.get(cap_col)), _clean(r.get("split")))
        mapping.setdefault(key, value)
        mapping.setdefault(key.rsplit("/", 1)[-1], value)
    return mapping


def _clean(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _sidecar(path: Path) -> str | None:
    txt = path.with_suffix(".txt")
    try:
        return _clean(txt.read_text(encoding="utf-8", errors="replace")) if txt.is_file() else None
    except OSError:
        return None


def _is_saved_dataset(path: Path) -> bool:
    return path.is_dir() and (
        (path / "dataset_dict.json").is_file()
        or ((path / "state.json").is_file() and (path / "dataset_info.json").is_file())
    )


def _embedded(data: bytes, name: str | None, media_dir: Path) -> tuple[str, Path]:
    """Write media bytes embedded in a dataset to ``media_dir`` (once, named by content): key and path."""
    digest = hashlib.sha1(data).hexdigest()[:16]
    name = Path(name or "media").name
    path = media_dir / digest / name
    if not path.is_file() or path.stat().st_size != len(data):
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(data)
        tmp.replace(path)
    return f"embedded/{digest}/{name}", path.resolve()


def _dataset_rows(
    src: Path, config: IngestConfig, media_dir: Path
) -> tuple[list[tuple[str, Path | None, str | None, str | None]], Path]:
    """(key, path, caption, split) of each row of a dataset source, and the folder relative paths start
    from. Media stored in the dataset as bytes (a ``Video`` feature saved with ``save_to_disk`` embeds its
    files) are written to ``media_dir`` first."""
    import datasets

    try:
        if src.is_dir():
            loaded = datasets.load_from_disk(str(src))
            base = src.parent
        else:
            loaded = datasets.load_dataset(
                DATA_EXTENSIONS[src.suffix.lower()], data_files=str(src), split="train"
            )
            base = src.parent
    except Exception as e:  # datasets raises many kinds; all mean "cannot read this"
        raise UserError(f"cannot load the dataset {src}: {type(e).__name__}: {e}") from None
    parts = list(loaded.items()) if isinstance(loaded, datasets.DatasetDict) else [(None, loaded)]
    out = []
    for split_name, ds in parts:
        media = _pick(ds.column_names, config.media_column, MEDIA_COLUMNS, "media paths", str(src))
        if media is None:
            raise UserError(
                f"dataset {src} has no column of media paths (looked for {', '.join(MEDIA_COLUMNS)}); "
                f"its columns are {', '.join(ds.column_names)}: name one with media_column"
            )
        feature = ds.features[media]
        if isinstance(feature, (datasets.Video, datasets.Image, datasets.Audio)):
            ds = ds.cast_column(media, type(feature)(decode=False))
        caption = _pick(ds.column_names, config.caption_column, CAPTION_COLUMNS, "captions", str(src))
        split_col = "split" if "split" in ds.column_names else None
        columns = [c for c in (media, caption, split_col) if c]
        for i, row in enumerate(ds.select_columns(columns)):
            value = row[media]
            caption_text = _clean(row[caption]) if caption else None
            split = _clean(row[split_col]) if split_col else split_name
            if isinstance(value, dict) and value.get("bytes"):
                out.append((*_embedded(value["bytes"], value.get("path"), media_dir), caption_text, split))
                continue
            if isinstance(value, dict):
                value = value.get("path")
            key = str(value) if value else f"<row {i}: no path>"
            out.append((key, Path(str(value)) if value else None, caption_text, split))
    return out, base


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


def _printable(text: str) -> str:
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _resolve(path: Path | None, base: Path) -> Path | None:
    if path is None or path.is_absolute():
        return path
    for root in (base, Path.cwd()):
        if (root / path).exists():
            return (root / path).resolve()
    return (base / path).resolve()


def _collect(
    src: Path, config: IngestConfig, captions: Path | None, media_dir: Path
) -> tuple[list[_Job], dict[str, Any]]:
    """The jobs of every file in ``src`` (captions resolved) and facts for the report."""
    mapping = _caption_map(captions) if captions is not None else {}
    facts: dict[str, Any] = {"captions_file": str(captions) if captions else None}
    entries: list[tuple[str, Path | None, str | None, str | None]] = []
    auto: dict[str, tuple[str | None, str | None]] = {}
    if src.is_file() and src.suffix.lower() in DATA_EXTENSIONS or _is_saved_dataset(src):
        rows, base = _dataset_rows(src, config, media_dir)
        facts["source_kind"] = "dataset"
        entries = [(key, _resolve(p, base), cap, split) for key, p, cap, split in rows]
    elif src.is_file():
        facts["source_kind"] = "file"
        entries = [(src.name, src.resolve(), None, None)]
    elif src.is_dir():
        facts["source_kind"] = "folder"
        entries = [(p.relative_to(src).as_posix(), p.resolve(), None, None) for p in _media_files(src)]
        if not entries:
            exts = ", ".join(VIDEO_EXTENSIONS)
            raise UserError(f"no media files in {src} (searched recursively for {exts} and audio files)")
        if captions is None:
            found = next((src / n for n in AUTO_CAPTION_FILES if (src / n).is_file()), None)
            if found is not None:
                auto = _caption_map(found)
                facts["captions_file"] = str(found)
    else:
        raise UserError(f"source {src} does not exist")
    if not entries:
        raise UserError(f"source {src} lists no media files")

    jobs: list[_Job] = []
    seen: set[str] = set()
    for key, path, cap, split in entries:
        if key in seen:
            continue  # the same file listed twice is one file
        seen.add(key)
        name = key.rsplit("/", 1)[-1]
        mapped = mapping.get(key) or mapping.get(name)
        automapped = auto.get(key) or auto.get(name)
        sidecar = _sidecar(path) if path is not None else None
        caption = (mapped and mapped[0]) or cap or sidecar or (automapped and automapped[0]) or None
        split = split or (mapped and mapped[1]) or (automapped and automapped[1]) or None
        try:
            stat = path.stat() if path is not None else None
        except OSError:
            stat = None
        size, mtime = (stat.st_size, stat.st_mtime_ns) if stat else (-1, -1)
        source, problem = str(path) if path is not None else "", None
        if not _utf8(key) or not _utf8(source):
            # Arrow strings are UTF-8: keep the file in the report under a readable name, and skip it.
            key, source = _printable(key), _printable(source)
            problem = f"{source}: the file name is not valid UTF-8; rename the file"
        jobs.append(_Job(key, source, caption, split, size, mtime, problem))
    return jobs, facts


# -------------------------------------------------------------------------------------------- output


@contextmanager
def _datasets_bars(enabled: bool) -> Iterator[None]:
    """Silence the `datasets` progress bars (saving, loading) unless ``enabled``."""
    import datasets

    was = datasets.is_progress_bar_enabled()
    if not enabled:
        datasets.disable_progress_bars()
    try:
        yield
    finally:
        if was and not enabled:
            datasets.enable_progress_bars()


def load_clip_index(out: str | os.PathLike) -> Any:
    """The clip index written by `ingest` (a ``datasets.Dataset``)."""
    import datasets

    path = Path(out) / CLIPS
    if not path.is_dir():
        raise UserError(f"{out} holds no clip index (no {CLIPS}/); make one with `videopoet data ingest`")
    return datasets.load_from_disk(str(path))


def _recover(out: Path) -> None:
    """Finish or undo a swap an interrupted run left half done."""
    for name in (CLIPS, FILES):
        old, new = out / f".{name}.old", out / f".{name}.new"
        if not (out / name).exists() and old.exists():
            old.rename(out / name)
        for leftover in (old, new):
            if leftover.exists():
                shutil.rmtree(leftover)


def _replace(ds: Any, out: Path, name: str) -> None:
    """Save ``ds`` as ``out/name``, replacing it only once the new copy is complete."""
    final, new, old = out / name, out / f".{name}.new", out / f".{name}.old"
    ds.save_to_disk(str(new))
    if final.exists():
        final.rename(old)
    new.rename(final)
    if old.exists():
        shutil.rmtree(old)


def _previous(out: Path, src: Path, config: IngestConfig) -> dict[str, dict[str, Any]]:
    """Records of the files a previous run on ``out`` processed (empty when there was none)."""
    import datasets

    report = out / REPORT
    if not (out / FILES).is_dir() or not (out / CLIPS).is_dir() or not report.is_file():
        return {}
    try:
        before = json.loads(report.read_text())
    except (OSError, ValueError):
        before = {}
    if before.get("settings") != config.settings():
        raise UserError(
            f"{out} holds clips made with other settings ({before.get('settings')}); ingest with the same "
            f"settings to add new files, or choose another --out"
        )
    if before.get("src") != str(src.resolve()):
        raise UserError(f"{out} holds clips of another source ({before.get('src')}); choose another --out")
    files = datasets.load_from_disk(str(out / FILES))
    return {r["key"]: r for r in files}


def _unchanged(job: _Job, record: dict[str, Any] | None) -> bool:
    """True when a previous run processed this very file with this caption."""
    if record is None or record["source"] != job.path:
        return False
    return all(record[k] == getattr(job, k) for k in ("size", "mtime_ns", "caption", "split"))


def _merge(
    out: Path, rows: list[dict[str, Any]], kept: dict[str, dict[str, Any]], before: dict[str, Any]
) -> Any:
    """The previous run's rows of unchanged files followed by the new rows."""
    import datasets
    import pyarrow as pa
    import pyarrow.compute as pc

    features = _clip_features()
    new = (
        datasets.Dataset.from_list(rows, features=features)
        if rows
        else datasets.Dataset.from_dict({k: [] for k in features}, features=features)
    )
    if not before or not (out / CLIPS).is_dir():
        return new
    old = datasets.load_from_disk(str(out / CLIPS))
    keep = pa.array(sorted({r["source"] for r in kept.values()}), pa.string())
    mask = pc.is_in(old.data.column("source"), value_set=keep).to_numpy(zero_copy_only=False)
    return datasets.concatenate_datasets([old.select(mask.nonzero()[0]).flatten_indices(), new])


def ingest(
    src: str | os.PathLike,
    out: str | os.PathLike,
    config: IngestConfig | None = None,
    captions: str | os.PathLike | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Cut every media file of ``src`` into clips and save the clip index to ``out`` (module docstring).

    Returns the report, also written to ``out/report.json``. Re-running on the same ``out`` processes only
    new or changed files. Raises `UserError` for a source that is missing, empty, or a dataset without a
    media column, and for an ``out`` made from another source or with other clip settings.
    """
    import datasets
    from tqdm.auto import tqdm

    config = config or IngestConfig()
    started = time.perf_counter()
    src, out = Path(src), Path(out)
    if not src.exists():
        raise UserError(f"source {src} does not exist")
    caption_path = Path(captions) if captions is not None else None
    if caption_path is not None and not caption_path.is_file():
        raise UserError(f"captions file {caption_path} does not exist")
    if out.exists() and not out.is_dir():
        raise UserError(f"output {out} exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    _recover(out)
    jobs, facts = _collect(src, config, caption_path, out / MEDIA)
    before = _previous(out, src, config)

    todo = [j for j in jobs if not _unchanged(j, before.get(j.key))]
    todo_keys = {j.key for j in todo}
    kept = {j.key: before[j.key] for j in jobs if j.key not in todo_keys}
    records: list[dict[str, Any]] = []
    rows: list[dict[str, Any]] = []
    skips = 0
    bar = tqdm(total=len(todo), desc="ingest", unit="file", disable=not progress, dynamic_ncols=True)
    work = [(j, config) for j in todo]
    pool = None
    if config.num_proc > 1 and len(todo) > 1:
        pool = mp.get_context().Pool(min(config.num_proc, len(todo)), initializer=_init_worker)
    try:
        results = pool.imap(_process, work, chunksize=1) if pool else map(_process, work)
        for record, file_rows in results:
            records.append(record)
            rows.extend(file_rows)
            bar.update(1)
            skips += record["status"] == "skipped"
            bar.set_postfix(clips=len(rows), skipped=skips, refresh=False)
    finally:
        bar.close()
        if pool is not None:
            pool.close()
            pool.join()

    with _datasets_bars(progress):
        clips = _merge(out, rows, kept, before)
        by_key = {**kept, **{r["key"]: r for r in records}}
        all_records = [by_key[j.key] for j in jobs]
        # Clips first, then files: after a crash in between, the files record is the old one, so the
        # files processed now are processed again and their rows replaced, never lost or doubled.
        _replace(clips, out, CLIPS)
        _replace(datasets.Dataset.from_list(all_records, features=_file_features()), out, FILES)

    skipped = [r for r in all_records if r["status"] == "skipped"]
    report = {
        "src": str(src.resolve()),
        "out": str(out.resolve()),
        **facts,
        "settings": config.settings(),
        "files_seen": len(jobs),
        "files_ingested": len(jobs) - len(skipped),
        "files_skipped": len(skipped),
        "files_processed": len(todo),
        "files_unchanged": len(kept),
        "files_removed": len(set(before) - {j.key for j in jobs}),
        "files_captioned": sum(1 for r in all_records if r["caption"]),
        "clips": len(clips),
        "clips_added": len(rows),
        "skipped": [{"file": r["key"], "reason": r["reason"], "detail": r["detail"]} for r in skipped],
        "notes": [
            {"file": r["key"], "note": r["detail"]}
            for r in all_records
            if r["status"] == "ingested" and r["detail"]
        ],
        "num_proc": config.num_proc,
        "seconds": round(time.perf_counter() - started, 3),
    }
    tmp = out / (REPORT + ".tmp")
    tmp.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    tmp.replace(out / REPORT)
    return report
