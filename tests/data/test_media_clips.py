"""Video clips from photographs and videos: crops of any aspect, moving photographs, photograph batches,
fixed validation clips, short videos read faster, and unreadable files skipped with a line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from videopoet.data.media_clips import MediaClipsConfig, MediaFolderClips, moving_photo, random_crop
from videopoet.data.sources import video_source
from videopoet.errors import UserError
from videopoet.media import write_image, write_video


def _photo(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A smooth colour photo with texture: [1, h, w, 3] uint8."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    img = np.stack([127 + 100 * np.sin(x / 7 + k) * np.cos(y / 5 - k) for k in range(3)], -1)
    return np.clip(img + rng.normal(0, 5, img.shape), 0, 255).astype(np.uint8)[None]


@pytest.mark.parametrize("shape", [(60, 200), (300, 40), (33, 33)])
def test_random_crop_gives_the_size_from_any_aspect(shape: tuple[int, int]) -> None:
    out = random_crop(_photo(*shape), (16, 24), np.random.default_rng(0), 0.5)
    assert out.shape == (1, 16, 24, 3) and out.dtype == np.uint8


def test_moving_photo_moves_and_is_reproducible() -> None:
    photo, cfg = _photo(120, 160), MediaClipsConfig(max_pan=0.5, max_zoom=1.5, max_rotation=5)
    clips = [moving_photo(photo, 9, (32, 32), np.random.default_rng(s), cfg) for s in range(6)]
    assert all(c.shape == (9, 32, 32, 3) for c in clips)
    assert np.array_equal(clips[0], moving_photo(photo, 9, (32, 32), np.random.default_rng(0), cfg))
    change = [np.abs(c[-1].astype(int) - c[0].astype(int)).mean() for c in clips]
    assert max(change) > 5  # some clips move noticeably
    still = MediaClipsConfig(max_pan=0.0, max_zoom=1.0, max_rotation=0.0)
    clip = moving_photo(photo, 5, (32, 32), np.random.default_rng(1), still)
    assert all(np.array_equal(clip[0], f) for f in clip)  # no motion asked: every frame the same


def _folder(tmp_path: Path) -> Path:
    root = tmp_path / "media"
    root.mkdir()
    write_image(root / "wide.png", _photo(40, 120, 1)[0])
    write_image(root / "tall.jpg", _photo(150, 50, 2)[0])
    (root / "broken.png").write_bytes(b"\x89PNG not an image")
    frames = np.repeat(_photo(48, 64, 3), 12, axis=0)
    frames = np.stack([np.roll(f, 2 * i, axis=1) for i, f in enumerate(frames)])
    write_video(root / "short.mp4", frames, 24.0)  # 0.5 s: too short for 9 frames at 8 fps, fine at 18
    return root


def test_folder_clips_mix_photographs_and_videos(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    root = _folder(tmp_path)
    source = video_source(root, 9, (32, 48), 8.0, media=MediaClipsConfig(image_share=0.0))
    assert isinstance(source, MediaFolderClips)
    assert "skipping broken.png" in capsys.readouterr().err
    assert sorted(n for n, _ in source.train_photos) == ["tall.jpg", "wide.png"]
    assert len(source.train_videos) == 1 and source.train_videos[0].fps == pytest.approx(18.0)
    batch = source.sample(np.random.default_rng(0), 3)
    assert batch.shape == (3, 3, 9, 32, 48) and batch.min() >= -1 and batch.max() <= 1
    stills = video_source(root, 9, (32, 48), 8.0, media=MediaClipsConfig(image_share=1.0))
    assert stills.sample(np.random.default_rng(0), 2).shape == (2, 3, 1, 32, 48)
    many = video_source(root, 9, (32, 48), 8.0, media=MediaClipsConfig(image_share=1.0, image_batch_size=5))
    assert many.sample(np.random.default_rng(0), 2).shape == (5, 3, 1, 32, 48)  # photograph batches only
    with pytest.raises(ValueError, match="image_batch_size"):
        MediaClipsConfig(image_batch_size=-1)
    val = source.validation(3)
    assert val.shape == (3, 3, 9, 32, 48) and torch.equal(val, source.validation(3))
    names = [n for n, _ in source.validation_items()]
    assert names[0].startswith("short@") and {"tall", "wide"} <= set(names)


def test_mixture_splits_the_batches_by_kind_for_timing(tmp_path: Path) -> None:
    root = _folder(tmp_path)
    source = video_source(root, 9, (32, 48), 8.0, media=MediaClipsConfig(image_share=0.3, image_batch_size=4))
    (kind_a, share_a, photos), (kind_b, share_b, clips) = source.mixture()
    assert (kind_a, kind_b) == ("photographs", "clips") and (share_a, share_b) == pytest.approx((0.3, 0.7))
    for seed in range(6):  # each part draws only its kind; the source itself is unchanged
        assert photos.sample(np.random.default_rng(seed), 2).shape == (4, 3, 1, 32, 48)
        assert clips.sample(np.random.default_rng(seed), 2).shape == (2, 3, 9, 32, 48)
    assert source.cfg.image_share == 0.3 and photos.train_photos is source.train_photos
    clips_only = video_source(root, 9, (32, 48), 8.0, media=MediaClipsConfig(image_share=0.0))
    assert [(k, s) for k, s, _ in clips_only.mixture()] == [("clips", 1.0)] and clips_only.mixture()[0][2] is clips_only


def test_a_folder_with_nothing_usable_is_one_clear_error(tmp_path: Path) -> None:
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(UserError, match="no usable video files or photographs.*broken.jpg"):
        video_source(tmp_path, 9, (32, 32), 8.0)


def test_colour_jitter_turns_hue_and_raises_saturation_of_a_share_of_the_training_items(tmp_path: Path) -> None:
    import math

    from videopoet.data.media_clips import colour_matrix, jitter_colour

    red = np.array([200.0, 0.0, 0.0])
    assert np.allclose(colour_matrix(2 * math.pi / 3, 1.0) @ red, [0, 200, 0], atol=1e-9)  # a third of a turn: red -> green
    assert np.allclose(colour_matrix(1.234, 1.7) @ np.full(3, 90.0), 90.0)  # greys stay grey
    pink = np.array([180.0, 120.0, 150.0])
    out = colour_matrix(0.0, 2.0) @ pink
    assert np.isclose(out.mean(), pink.mean()) and np.allclose(out - out.mean(), 2 * (pink - pink.mean()))
    magenta_from_red = colour_matrix(-math.pi / 3, 1.0) @ np.array([200.0, 20.0, 20.0])  # a sixth of a turn back
    assert magenta_from_red[0] > 100 and magenta_from_red[2] > 100 and magenta_from_red[1] < 40
    rng = np.random.default_rng(0)
    frames = np.zeros((2, 4, 4, 3), np.uint8)
    frames[..., 0], frames[..., 1], frames[..., 2] = 200, 60, 40
    colours = {tuple(jitter_colour(frames, rng, MediaClipsConfig(colour_jitter=1.0))[0, 0, 0]) for _ in range(40)}
    assert len(colours) > 30 and all(v.dtype == np.uint8 for v in jitter_colour(frames, rng, MediaClipsConfig(colour_jitter=1.0, max_saturation=3.0)))  # clipped to uint8
    state = rng.bit_generator.state
    assert jitter_colour(frames, rng, MediaClipsConfig()) is frames and rng.bit_generator.state == state  # off: no draw
    with pytest.raises(ValueError, match="colour_jitter"):
        MediaClipsConfig(colour_jitter=1.5)
    with pytest.raises(ValueError, match="max_saturation"):
        MediaClipsConfig(max_saturation=0.5)
    root = _folder(tmp_path)
    plain = video_source(root, 9, (32, 48), 8.0, media=MediaClipsConfig(image_share=1.0))
    jittered = video_source(root, 9, (32, 48), 8.0, media=MediaClipsConfig(image_share=1.0, colour_jitter=1.0))
    a, b = plain.sample(np.random.default_rng(3), 1), jittered.sample(np.random.default_rng(3), 1)
    assert a.shape == b.shape and not torch.equal(a, b)
    assert torch.equal(jittered.validation(2), plain.validation(2))  # validation is never jittered


def test_white_balance_tints_a_share_of_the_items_within_the_gain_range() -> None:
    from videopoet.data.media_clips import jitter_colour

    white = np.full((2, 4, 4, 3), 230, np.uint8)  # a studio background: neutral near-white
    rng = np.random.default_rng(0)
    cfg = MediaClipsConfig(white_balance=1.0, max_gain_shift=0.1)
    tints = np.array([jitter_colour(white, rng, cfg)[0, 0, 0] for _ in range(200)], np.float64)
    assert tints.min() >= 207 and tints.max() <= 253  # 230 x [0.9, 1.1]
    assert (np.ptp(tints, axis=1) > 5).mean() > 0.5  # most come back tinted, not grey
    assert all(np.corrcoef(tints[:, i], tints[:, j])[0, 1] < 0.5 for i, j in ((0, 1), (0, 2), (1, 2)))  # per channel
    bright = np.full((1, 2, 2, 3), 250, np.uint8)
    assert jitter_colour(bright, rng, cfg).max() == 255  # clipped, as an over-exposed sky is
    half = MediaClipsConfig(white_balance=0.5)
    changed = [not np.array_equal(jitter_colour(white, rng, half), white) for _ in range(400)]
    assert 0.4 < np.mean(changed) < 0.6
    with pytest.raises(ValueError, match="white_balance"):
        MediaClipsConfig(white_balance=-0.1)
    with pytest.raises(ValueError, match="max_gain_shift"):
        MediaClipsConfig(max_gain_shift=1.0)


def test_exposure_brightens_a_share_of_the_items_by_one_gain_and_clips() -> None:
    from videopoet.data.media_clips import jitter_colour

    sky = np.full((2, 4, 4, 3), (150, 180, 230), np.uint8)  # a blue sky
    rng = np.random.default_rng(0)
    cfg = MediaClipsConfig(exposure=1.0, max_exposure=1.5)
    out = np.array([jitter_colour(sky, rng, cfg)[0, 0, 0] for _ in range(200)], np.float64)
    assert (out >= sky[0, 0, 0]).all() and out[:, 0].max() <= 225  # brighter only, up to 1.5x
    gains = out[:, 0] / 150
    assert np.allclose(out[:, 1], np.minimum(np.round(180 * gains), 255), atol=1)  # one gain for R, G and B ...
    assert (out[:, 2] == 255).mean() > 0.5  # ... clipped: most skies come back a tinted near-white
    half = MediaClipsConfig(exposure=0.5)
    changed = [not np.array_equal(jitter_colour(sky, rng, half), sky) for _ in range(400)]
    assert 0.4 < np.mean(changed) < 0.6
    with pytest.raises(ValueError, match="exposure"):
        MediaClipsConfig(exposure=1.5)
    with pytest.raises(ValueError, match="max_exposure"):
        MediaClipsConfig(max_exposure=0.9)
