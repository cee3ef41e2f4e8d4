"""Training and validation media for the tokenizers, whatever family trains on them.

A source is named by the user (`--data`): `shapes` (rendered on the fly), a folder of media files (or
one file), or a clip index folder from `videopoet data ingest`. What it yields depends on the modality a
tokenizer family declares (`TokenizerFamily.modality`):

- `video`: float clips `[B, 3, T, H, W]` in [-1, 1] at the family's frame count, size and frame rate;
- `audio`: float waveforms `[B, 1, N]` in [-1, 1] at the family's sample rate.

Training batches are drawn with the loop's per-step generator (so a resumed run sees the same batches);
validation clips are the same every call: held-out shapes combinations with a fixed seed, the clip
index's `val` rows, or clips spread evenly over the files.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from videopoet.data.corpus import (  # noqa: F401 (Span, spread and the tensor forms are part of this API)
    MODALITY_EXTENSIONS,
    VALIDATION_SEED,
    Span,
    file_spans,
    frames_to_tensor,
    report_skipped,
    skipped_summary,
    split_files,
    spread,
    waves_to_tensor,
)
from videopoet.data.ingest import CLIPS, load_clip_index
from videopoet.data.media_clips import MediaClipsConfig, MediaFolderClips
from videopoet.data.synthetic import HELDOUT_COMBOS, PITCH_HZ, PITCH_TOLERANCE, TRAIN_COMBOS, ShapesConfig
from videopoet.errors import UserError
from videopoet.media import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS, read_audio, read_clip, resize_center_crop

# ---- shapes, rendered on the fly ------------------------------------------------------------------------------


class ShapesClips:
    """Shapes clips: training from `TRAIN_COMBOS`, validation from `HELDOUT_COMBOS` (combinations never
    trained on) with a fixed seed. Non-square sizes are rendered square and center-cropped."""

    def __init__(
        self, frames: int, size: tuple[int, int], fps: float, shapes: ShapesConfig | None = None
    ) -> None:
        self.frames, self.size = frames, tuple(size)
        # The look (shape width, background levels) from `shapes`; size and length from the tokenizer.
        self.shapes = dataclasses.replace(
            shapes or ShapesConfig(), size=max(16, *size), frames=max(2, frames), fps=fps
        )

    def _render(self, combo: tuple[str, str, str], rng: np.random.Generator) -> np.ndarray:
        from videopoet.data.synthetic import render_frames

        return resize_center_crop(render_frames(*combo, rng, self.shapes)[: self.frames], self.size)

    def sample(self, rng: np.random.Generator, batch_size: int) -> torch.Tensor:
        combos = [TRAIN_COMBOS[i] for i in rng.integers(len(TRAIN_COMBOS), size=batch_size)]
        return frames_to_tensor([self._render(c, rng) for c in combos])

    def validation(self, n: int) -> torch.Tensor:
        rng = np.random.default_rng(VALIDATION_SEED)
        return frames_to_tensor(
            [self._render(HELDOUT_COMBOS[i % len(HELDOUT_COMBOS)], rng) for i in range(n)]
        )


class ShapesTones:
    """The shapes' tones: the pitch of a training shape at a random phase and amplitude (0.1-0.9), so a
    codec learns the tones rather than one waveform; validation is held-out clips at their exact rendering
    (amplitude 0.5, fades), whose pitch is known and scored as `pitch_ok`."""

    def __init__(self, sample_rate: int, segment_samples: int, val_samples: int) -> None:
        self.sr, self.segment, self.val_samples = sample_rate, segment_samples, val_samples
        self.train_shapes = sorted({c[1] for c in TRAIN_COMBOS})
        self.val_shapes = [c[1] for c in HELDOUT_COMBOS] or self.train_shapes

    def sample(self, rng: np.random.Generator, batch_size: int) -> torch.Tensor:
        t = np.arange(self.segment) / self.sr
        wavs = []
        for _ in range(batch_size):
            shape = self.train_shapes[int(rng.integers(len(self.train_shapes)))]
            amp, phase = rng.uniform(0.1, 0.9), rng.uniform(0, 2 * math.pi)
            wavs.append(amp * np.sin(2 * math.pi * PITCH_HZ[shape] * t + phase))
        return waves_to_tensor(wavs)

    def val_pitches(self, n: int) -> list[float]:
        return [PITCH_HZ[self.val_shapes[i % len(self.val_shapes)]] for i in range(n)]

    def validation(self, n: int) -> torch.Tensor:
        from videopoet.data.synthetic import render_audio

        cfg = ShapesConfig(sample_rate=self.sr, frames=max(2, math.ceil(self.val_samples / self.sr * 8)))
        wavs = [
            render_audio(self.val_shapes[i % len(self.val_shapes)], cfg)[: self.val_samples] for i in range(n)
        ]
        return waves_to_tensor([np.pad(w, (0, self.val_samples - w.size)) for w in wavs])

    def validation_scores(self, reconstructions: np.ndarray) -> dict[str, float]:
        """Share of validation reconstructions whose pitch is the tone's (within `PITCH_TOLERANCE`)."""
        return {"pitch_ok": pitch_accuracy(reconstructions, self.val_pitches(len(reconstructions)), self.sr)}


def pitch_error(wav: np.ndarray, pitch_hz: float, sample_rate: int) -> float:
    """Relative error of the dominant pitch of `wav` against `pitch_hz` (inf when silent)."""
    from videopoet.metrics.audio import read_audio_pitch

    found = read_audio_pitch(wav, sample_rate)
    return math.inf if found is None else abs(found - pitch_hz) / pitch_hz


def pitch_accuracy(wavs: np.ndarray, pitches: list[float], sample_rate: int) -> float:
    """Share of waveforms whose dominant pitch is within `PITCH_TOLERANCE` of the expected one."""
    ok = [pitch_error(w, p, sample_rate) <= PITCH_TOLERANCE for w, p in zip(wavs, pitches)]
    return float(np.mean(ok)) if ok else 0.0


# ---- media files and clip indexes ---------------------------------------------------------------------------------


class MediaClips:
    """Random clips from spans of media files, read with `read_clip` at the model's frame count and size
    (resize to cover, center crop; past the end the last frame repeats)."""

    def __init__(self, train: list[Span], val: list[Span], frames: int, size: tuple[int, int]) -> None:
        self.train, self.val, self.frames, self.size = train, val, frames, tuple(size)

    def _read(self, span: Span, start_s: float) -> np.ndarray:
        return read_clip(span.path, start_s, self.frames, span.fps, size=self.size, pad=True)

    def sample(self, rng: np.random.Generator, batch_size: int) -> torch.Tensor:
        spans = [self.train[i] for i in rng.integers(len(self.train), size=batch_size)]
        return frames_to_tensor([self._read(s, float(rng.uniform(s.start_s, s.last_start_s))) for s in spans])

    def validation(self, n: int) -> torch.Tensor:
        return frames_to_tensor([self._read(span, start) for span, start in spread(self.val, n)])


class MediaSound:
    """Random crops of media files' audio tracks, read with `read_audio` (down-mixed, resampled, padded
    with silence past the end)."""

    def __init__(
        self, train: list[Span], val: list[Span], sample_rate: int, segment_samples: int, val_samples: int
    ) -> None:
        self.train, self.val = train, val
        self.sr, self.segment, self.val_samples = sample_rate, segment_samples, val_samples

    def _read(self, span: Span, start_s: float, n: int) -> np.ndarray:
        return read_audio(span.path, start_s, n / self.sr, self.sr, pad=True)

    def sample(self, rng: np.random.Generator, batch_size: int) -> torch.Tensor:
        spans = [self.train[i] for i in rng.integers(len(self.train), size=batch_size)]
        return waves_to_tensor(
            [self._read(s, float(rng.uniform(s.start_s, s.last_start_s)), self.segment) for s in spans]
        )

    def validation(self, n: int) -> torch.Tensor:
        return waves_to_tensor(
            [self._read(span, start, self.val_samples) for span, start in spread(self.val, n)]
        )


def index_spans(root: Path, modality: str) -> tuple[list[Span], list[Span]]:
    """(train, val) spans of a clip index's rows (sound: only rows with audio), each one clip long."""
    train, val = [], []
    for row in load_clip_index(root):
        if modality == "audio" and not row.get("has_audio"):
            continue
        start = float(row["start_s"])
        span = Span(row["source"], start, start, float(row["fps"]) if modality == "video" else None)
        (train if row.get("split") in (None, "train") else val).append(span)
    return train, val


def _check_root(src: str | Path) -> Path:
    root = Path(src)
    if not root.exists():
        raise UserError(f"training data not found: {src} (give `shapes`, a media folder or a clip index)")
    return root


def _spans(src: str | Path, modality: str, need_s: float, fps: float | None) -> tuple[list[Span], list[Span]]:
    """(train, val) spans of a clip index or a media folder (split by its `splits.json` if it has one);
    UserError when nothing is usable. Skipped files are reported, one line each."""
    root = _check_root(src)
    what = "clips" if modality == "video" else "clips with audio"
    if (root / CLIPS).is_dir():
        train, val = index_spans(root, modality)
        if not train and not val:
            raise UserError(f"clip index {root} holds no {what}")
        return train or val, val or train
    exts = VIDEO_EXTENSIONS if modality == "video" else MODALITY_EXTENSIONS["audio"]
    train_files, val_files = split_files(root, exts)
    train, skipped = file_spans(train_files, modality, need_s, fps)
    val, val_skipped = (
        (train, []) if val_files == train_files else file_spans(val_files, modality, need_s, fps)
    )
    report_skipped(skipped + val_skipped)
    if not train:
        why = skipped_summary(skipped)
        need = (
            f"video files of at least {need_s:g} s"
            if modality == "video"
            else "audio or video files with an audio stream"
        )
        raise UserError(f"no usable {modality} in {root}: need {need}{why}")
    return train, val or train


def video_source(
    src: str | Path,
    frames: int,
    size: tuple[int, int],
    fps: float,
    shapes: ShapesConfig | None = None,
    media: MediaClipsConfig | None = None,
) -> Any:
    """Clips of `frames` frames at `fps`, `size` = (H, W), from `src`: rendered shapes (`shapes` sets their
    look), a clip index's clips, or a folder's videos and photographs (`media` says how clips are made)."""
    if str(src) == "shapes":
        return ShapesClips(frames, size, fps, shapes)
    root = _check_root(src)
    if (root / CLIPS).is_dir():
        return MediaClips(*_spans(root, "video", frames / fps, fps), frames, size)
    videos, photos = split_files(root, VIDEO_EXTENSIONS), split_files(root, IMAGE_EXTENSIONS)
    return MediaFolderClips(videos, photos, frames, size, fps, media)


def audio_source(
    src: str | Path,
    sample_rate: int,
    segment_samples: int,
    val_samples: int,
    shapes: ShapesConfig | None = None,
    media: MediaClipsConfig | None = None,
) -> Any:
    """Training crops of `segment_samples` and validation clips of `val_samples` at `sample_rate` from `src`."""
    if str(src) == "shapes":
        return ShapesTones(sample_rate, segment_samples, val_samples)
    train, val = _spans(src, "audio", segment_samples / sample_rate, None)
    return MediaSound(train, val, sample_rate, segment_samples, val_samples)


SOURCES: dict[str, Callable[..., Any]] = {"video": video_source, "audio": audio_source}


def training_source(
    family: Any,
    src: str | Path,
    config: Any,
    shapes: ShapesConfig | None = None,
    media: MediaClipsConfig | None = None,
) -> Any:
    """The source a tokenizer `family` trains on: `src` read as its modality's media, at the geometry
    its training `config` asks for (`family.source_kwargs(config)`); `shapes` sets how `shapes` clips look,
    `media` how clips are made from a folder's photographs and videos."""
    return SOURCES[family.modality](src, **family.source_kwargs(config), shapes=shapes, media=media)


def split_among_ranks(config: Any, media: MediaClipsConfig | None, ranks: int) -> None:
    """Make a tokenizer training config's batches (`train.batch_size`, and `media.image_batch_size` when
    set) per rank for `ranks` data-parallel ranks, in place: a config gives the global batch, so a recipe
    is the same on any number of ranks. Sizes that `ranks` does not divide are the user's error."""
    if ranks <= 1:
        return
    sizes = {"train.batch_size": config.train.batch_size, "media_clips.image_batch_size": media.image_batch_size if media else 0}
    bad = [f"{key} ({size})" for key, size in sizes.items() if size % ranks]
    if bad:
        raise UserError(f"{ranks} ranks share the config's global batch: they must divide {' and '.join(bad)}")
    config.train.batch_size //= ranks
    if media is not None:
        media.image_batch_size //= ranks
