"""Media folders as training data: their train / val split, the stretches of each file a clip can start
in, and the tensor form of a batch.

A folder (such as the project's real-media corpus) may hold a `splits.json`: `{"train": [...], "val":
[...]}`, paths relative to the folder. Where it does, training reads only `train` files and validation
only `val` files; where it does not, every file serves both (a user's own folder of clips). Files a
modality cannot read (an image for sound, a text file for anything) are left out by extension here;
unreadable media files are skipped later, with a line naming each.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from videopoet.errors import UserError
from videopoet.media import AUDIO_EXTENSIONS, IMAGE_EXTENSIONS, VIDEO_EXTENSIONS, MediaError, probe

SPLITS_FILE = "splits.json"
VALIDATION_SEED = 1234  # fixed, so validation clips made at random are the same in every run

# The extensions each modality's sources read: video clips come from videos and photographs (as 1-frame
# videos and moving clips), sound from audio files and the audio tracks of videos.
MODALITY_EXTENSIONS: dict[str, tuple[str, ...]] = {
    "video": VIDEO_EXTENSIONS + IMAGE_EXTENSIONS,
    "audio": AUDIO_EXTENSIONS + VIDEO_EXTENSIONS,
}


def has_splits(root: str | Path) -> bool:
    """Whether `root` is a folder with a `splits.json`."""
    return (Path(root) / SPLITS_FILE).is_file()


def _listed(root: Path, names: list[str], exts: tuple[str, ...]) -> list[Path]:
    missing = [n for n in names if not (root / n).is_file()]
    if missing:
        more = f" (and {len(missing) - 3} more)" if len(missing) > 3 else ""
        raise UserError(
            f"{root / SPLITS_FILE} lists files that are not there: {', '.join(missing[:3])}{more}"
        )
    return [root / n for n in names if Path(n).suffix.lower() in exts]


def split_files(root: str | Path, extensions: tuple[str, ...]) -> tuple[list[Path], list[Path]]:
    """(train, val) files under `root` (or `root` itself, a file) whose extension is in `extensions`:
    the lists of `root/splits.json` when there is one, else every file, sorted, in both."""
    root = Path(root)
    exts = tuple(e.lower() for e in extensions)
    if root.is_file():
        return ([root], [root]) if root.suffix.lower() in exts else ([], [])
    if has_splits(root):
        try:
            splits = json.loads((root / SPLITS_FILE).read_text())
            train, val = list(splits["train"]), list(splits["val"])
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise UserError(
                f'{root / SPLITS_FILE} is not a {{"train": [...], "val": [...]}} file: {e}'
            ) from e
        return _listed(root, train, exts), _listed(root, val, exts)
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in exts)
    return files, files


@dataclass
class Span:
    """A stretch of one media file a clip can start in: start times in [start_s, last_start_s]."""

    path: str
    start_s: float
    last_start_s: float
    fps: float | None = None  # the rate video clips are read at (None for sound)

    def at(self, frac: float) -> float:
        return self.start_s + (self.last_start_s - self.start_s) * frac


def spread(spans: list[Span], n: int) -> list[tuple[Span, float]]:
    """`n` fixed (span, start) pairs: round-robin over the spans, then evenly along each span."""
    rounds = math.ceil(n / len(spans))
    out = []
    for i in range(n):
        span, k = spans[i % len(spans)], i // len(spans)
        out.append((span, span.at(k / (rounds - 1) if rounds > 1 else 0.0)))
    return out


def frames_to_tensor(frames: list[np.ndarray] | np.ndarray) -> torch.Tensor:
    """uint8 clips `[B, T, H, W, 3]` (or a list of `[T, H, W, 3]`) -> float `[B, 3, T, H, W]` in [-1, 1]."""
    x = torch.from_numpy(np.ascontiguousarray(np.stack(list(frames))))
    return x.permute(0, 4, 1, 2, 3).float() / 127.5 - 1


def waves_to_tensor(wavs: list[np.ndarray]) -> torch.Tensor:
    """float mono waveforms of one length -> `[B, 1, N]` in [-1, 1]."""
    return torch.from_numpy(np.stack(wavs).astype(np.float32))[:, None].clamp(-1, 1)


def readable(
    paths: list[Path], read: Callable[[Path], Any], skipped: list[str]
) -> Iterator[tuple[Path, Any]]:
    """(path, read(path)) for every path `read` can read; a `MediaError` adds "NAME: why" to `skipped`."""
    for path in paths:
        try:
            value = read(path)
        except MediaError as e:
            skipped.append(f"{path.name}: {e}")
            continue
        yield path, value


def skipped_summary(skipped: list[str]) -> str:
    """ " (skipped: a; b; c ...)" for an error message, or "" when nothing was skipped."""
    return f" (skipped: {'; '.join(skipped[:3])}{' ...' if len(skipped) > 3 else ''})" if skipped else ""


def file_spans(
    files: list[Path], modality: str, need_s: float, fps: float | None = None
) -> tuple[list[Span], list[str]]:
    """Spans of the usable `files` for `modality`, and why others were skipped: a video source needs a
    video stream at least `need_s` long, a sound source an audio stream (from audio or video files)."""
    spans, skipped = [], []
    for path, info in readable(files, probe, skipped):
        streams = info.video if modality == "video" else info.audio
        if not streams:
            skipped.append(f"{path.name}: no {modality} stream")
            continue
        duration = streams[0].duration_s or info.duration_s
        if not duration or duration <= 0:
            skipped.append(f"{path.name}: unknown or zero duration")
        elif modality == "video" and duration + 1e-6 < need_s:
            skipped.append(f"{path.name}: shorter than {need_s:g} s")
        else:
            spans.append(Span(str(path), 0.0, max(0.0, duration - need_s), fps))
    return spans, skipped


def report_skipped(lines: list[str]) -> None:
    """One line on stderr per media file a source leaves out, so a broken file never stops training."""
    for line in lines:
        print(f"skipping {line}", file=sys.stderr, flush=True)
