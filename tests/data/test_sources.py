"""The tokenizers' training sources: shapes rendered on the fly, media folders and clip indexes, for the
video and the audio modality, and their errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from videopoet.data.media_clips import MediaFolderClips
from videopoet.data.sources import (
    MediaClips,
    ShapesClips,
    ShapesTones,
    Span,
    audio_source,
    pitch_accuracy,
    spread,
    training_source,
    video_source,
)
from videopoet.data.synthetic import PITCH_HZ, ShapesConfig, render_frames
from videopoet.errors import UserError
from videopoet.media import write_audio, write_video
from videopoet.tokenizers.registry import FAMILIES

CLIP = {"frames": 9, "size": (32, 32), "fps": 8.0}
SOUND = {"sample_rate": 8000, "segment_samples": 4000, "val_samples": 8000}


def test_shapes_clips_are_deterministic_and_fit_any_aspect() -> None:
    source = video_source("shapes", 9, (32, 48), 8.0)
    a, b = source.sample(np.random.default_rng(3), 2), source.sample(np.random.default_rng(3), 2)
    assert a.shape == (2, 3, 9, 32, 48) and torch.equal(a, b) and a.min() >= -1 and a.max() <= 1
    assert torch.equal(source.validation(3), source.validation(3))


def test_shapes_clips_are_drawn_as_the_shapes_config_says() -> None:
    look = ShapesConfig(size=64, frames=3, fps=2.0, background_levels=(30, 30), shape_width=0.4)
    source = video_source("shapes", **CLIP, shapes=look)
    assert isinstance(source, ShapesClips)
    assert source.shapes.size == 32 and source.shapes.frames == 9 and source.shapes.fps == 8.0  # the tokenizer's
    clips = source.sample(np.random.default_rng(0), 4)
    corner = ((clips[:, :, :, 0, 0] + 1) * 127.5).round()
    assert (corner == 30).all()  # the one background level asked for
    default = video_source("shapes", **CLIP).sample(np.random.default_rng(0), 4)
    assert not torch.equal(clips, default)


def test_media_folder_and_clip_index_give_clips(tmp_path: Path) -> None:
    from videopoet.data.ingest import IngestConfig, ingest

    media = tmp_path / "media"
    media.mkdir()
    rng = np.random.default_rng(0)
    write_video(media / "long.mp4", render_frames("red", "circle", "left", rng, ShapesConfig(frames=24)), 8.0)
    write_video(media / "short.mp4", render_frames("blue", "square", "up", rng, ShapesConfig(frames=4)), 8.0)
    (media / "notes.txt").write_text("not media")
    source = video_source(media, **CLIP)
    assert isinstance(source, MediaFolderClips)
    assert [Path(s.path).name for s in source.train_videos] == ["long.mp4"]  # 4 frames cannot fill 9
    assert source.sample(np.random.default_rng(0), 2).shape == (2, 3, 9, 32, 32)
    assert torch.equal(source.validation(2), source.validation(2))

    ingest(media, tmp_path / "index", IngestConfig(frames=9), progress=False)
    indexed = video_source(tmp_path / "index", **CLIP)
    assert isinstance(indexed, MediaClips)
    assert indexed.sample(np.random.default_rng(0), 1).shape == (1, 3, 9, 32, 32)

    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(UserError, match="no usable video"):
        video_source(empty, **CLIP)
    with pytest.raises(UserError, match="not found"):
        video_source(tmp_path / "missing", **CLIP)


def test_sound_from_shapes_and_files(tmp_path: Path) -> None:
    shapes = audio_source("shapes", **SOUND)
    assert isinstance(shapes, ShapesTones) and shapes.validation(2).shape == (2, 1, 8000)
    with pytest.raises(UserError, match="not found"):
        audio_source(tmp_path / "missing", **SOUND)
    (tmp_path / "notes.txt").write_text("no audio here")
    with pytest.raises(UserError, match="no usable audio"):
        audio_source(tmp_path, **SOUND)
    write_audio(tmp_path / "a.wav", 0.3 * np.sin(np.arange(6000) / 5.0).astype(np.float32), 8000)  # resampled
    source = audio_source(tmp_path, **SOUND)
    batch = source.sample(np.random.default_rng(0), 3)
    assert batch.shape == (3, 1, 4000) and batch.abs().max() > 0.1
    assert source.validation(2).shape == (2, 1, 8000)  # padded past the file's end


def test_shapes_tones_score_the_pitch_of_reconstructions() -> None:
    tones = ShapesTones(16000, 8000, 16000)
    clips = tones.validation(3)[:, 0].numpy()
    assert tones.validation_scores(clips) == {"pitch_ok": 1.0}
    assert tones.validation_scores(np.zeros_like(clips)) == {"pitch_ok": 0.0}  # silence has no pitch
    t = np.arange(16000) / 16000
    wrong = np.stack([np.sin(2 * np.pi * PITCH_HZ["triangle"] * t)] * 3)
    assert pitch_accuracy(wrong, [PITCH_HZ["circle"]] * 3, 16000) == 0.0


def test_spread_places_validation_clips_over_spans_then_along_them() -> None:
    a, b = Span("a", 0.0, 10.0), Span("b", 2.0, 2.0)
    assert [(s.path, t) for s, t in spread([a, b], 4)] == [("a", 0.0), ("b", 2.0), ("a", 10.0), ("b", 2.0)]
    assert [t for _, t in spread([a], 3)] == [0.0, 5.0, 10.0]


@pytest.mark.parametrize("name", list(FAMILIES))
def test_every_family_gets_a_source_at_its_geometry(name: str) -> None:
    from videopoet.config import load_section

    family = FAMILIES[name]
    config = load_section(family.section, Path(__file__).resolve().parents[2] / "configs" / "tiny.yaml")
    source = training_source(family, "shapes", config)
    batch = source.sample(np.random.default_rng(0), 1)
    spec = family.source_kwargs(config)
    expected = (1, 3, spec["frames"], *spec["size"]) if family.modality == "video" else (1, 1, spec["segment_samples"])
    assert tuple(batch.shape) == expected


def test_split_among_ranks_divides_the_global_batch() -> None:
    from types import SimpleNamespace

    from videopoet.data.media_clips import MediaClipsConfig
    from videopoet.data.sources import split_among_ranks

    def make(batch: int) -> SimpleNamespace:
        return SimpleNamespace(train=SimpleNamespace(batch_size=batch))

    config, media = make(4), MediaClipsConfig(image_batch_size=32)
    split_among_ranks(config, media, 2)
    assert config.train.batch_size == 2 and media.image_batch_size == 16
    config, media = make(4), MediaClipsConfig(image_batch_size=0)  # 0: the clip batch size, nothing to split
    split_among_ranks(config, media, 4)
    assert config.train.batch_size == 1 and media.image_batch_size == 0
    config = make(4)
    split_among_ranks(config, None, 1)
    assert config.train.batch_size == 4
    with pytest.raises(UserError, match=r"train.batch_size \(7\) and media_clips.image_batch_size \(32\)"):
        split_among_ranks(make(7), MediaClipsConfig(image_batch_size=32), 3)
