"""The shapes world: rendering of frames and tones, captions, combinations and settings."""


import numpy as np
import pytest

from videopoet.data import synthetic as syn
from videopoet.data.synthetic import (
    ALL_COMBOS,
    COLORS,
    DIRECTIONS,
    HELDOUT_COMBOS,
    PITCH_HZ,
    SHAPES,
    TRAIN_COMBOS,
    ShapesConfig,
    make_caption,
    render_clip,
)
from videopoet.errors import UserError


def _shape_mask(frames: np.ndarray) -> np.ndarray:
    """Pixels clearly different from the (gray) corner color: [T, H, W]."""
    f = frames.astype(np.int32)
    bg = f[:, :1, :1, :]
    return np.abs(f - bg).sum(-1) > 90


def test_constants():
    assert COLORS == {
        "red": (230, 40, 40),
        "green": (40, 200, 70),
        "blue": (50, 90, 240),
        "yellow": (240, 220, 50),
    }
    assert SHAPES == ("circle", "square", "triangle")
    assert set(DIRECTIONS) == {"left", "right", "up", "down"}
    assert PITCH_HZ == {"circle": 262.0, "square": 392.0, "triangle": 659.0}
    assert len(ALL_COMBOS) == 48 and len(set(ALL_COMBOS)) == 48


def test_heldout_combos_leave_every_attribute_in_training():
    assert len(HELDOUT_COMBOS) == len(set(HELDOUT_COMBOS)) == 6
    assert set(HELDOUT_COMBOS) <= set(ALL_COMBOS)
    assert set(TRAIN_COMBOS) == set(ALL_COMBOS) - set(HELDOUT_COMBOS)
    for i, values in enumerate((COLORS, SHAPES, DIRECTIONS)):
        assert {c[i] for c in TRAIN_COMBOS} == set(values)
    # Every pair of attributes of a held-out combination is still seen in training.
    for c, s, d in HELDOUT_COMBOS:
        assert any(t[0] == c and t[1] == s for t in TRAIN_COMBOS)
        assert any(t[0] == c and t[2] == d for t in TRAIN_COMBOS)
        assert any(t[1] == s and t[2] == d for t in TRAIN_COMBOS)


@pytest.mark.parametrize("seed", [0, 1])
def test_render_all_combos(seed):
    cfg = ShapesConfig()
    for i, (color, shape, direction) in enumerate(ALL_COMBOS):
        frames, audio = render_clip(color, shape, direction, np.random.default_rng([seed, i]), cfg)
        assert frames.shape == (17, 64, 64, 3) and frames.dtype == np.uint8
        assert audio.shape == (34000,) and audio.dtype == np.float32

        # Dark gray background, shape never touching the border.
        corner = frames[0, 0, 0]
        assert corner[0] == corner[1] == corner[2] and corner[0] <= 60
        border = np.concatenate([frames[:, 0], frames[:, -1], frames[:, :, 0], frames[:, :, -1]], axis=1)
        assert (border == corner).all()

        mask = _shape_mask(frames)
        assert mask.sum(axis=(1, 2)).min() > 100
        # The fill is exactly the palette color inside the shape.
        core = frames[mask]
        exact = (core == np.asarray(COLORS[color])).all(-1).mean()
        assert exact > 0.6

        # Size about 0.3 of the canvas.
        ys, xs = np.nonzero(mask[8])
        assert 0.24 * 64 <= xs.max() - xs.min() + 1 <= 0.36 * 64
        assert 0.24 * 64 <= ys.max() - ys.min() + 1 <= 0.36 * 64

        # Centroid of the bounding box travels ~0.2 -> ~0.8 along the direction, at constant speed.
        centers = []
        for t in range(frames.shape[0]):
            ys, xs = np.nonzero(mask[t])
            centers.append(((xs.min() + xs.max() + 1) / 128.0, (ys.min() + ys.max() + 1) / 128.0))
        centers = np.asarray(centers)
        axis = 0 if direction in ("left", "right") else 1
        along, perp = centers[:, axis], centers[:, 1 - axis]
        first, last = (0.2, 0.8) if direction in ("right", "down") else (0.8, 0.2)
        assert abs(along[0] - first) < 0.07 and abs(along[-1] - last) < 0.07, (direction, along)
        steps = np.diff(along)
        assert np.all(np.sign(steps) == np.sign(last - first))
        assert np.ptp(steps) < 0.04  # constant speed up to pixel rounding
        assert np.ptp(perp) < 0.02 and abs(perp.mean() - 0.5) < 0.1

        # Triangle apex up: narrow at the top, wide at the bottom.
        if shape == "triangle":
            rows = mask[0].sum(axis=1)
            nz = np.nonzero(rows)[0]
            assert rows[nz[0]] < rows[nz[-1]] / 3


def test_render_audio_tone():
    cfg = ShapesConfig()
    for shape, hz in PITCH_HZ.items():
        wav = syn.render_audio(shape, cfg)
        assert np.abs(wav).max() <= 0.5 + 1e-6 and np.abs(wav).max() > 0.49
        assert abs(wav[0]) < 1e-3 and abs(wav[-1]) < 0.01  # faded in and out
        spec = np.abs(np.fft.rfft(wav * np.hanning(wav.size), 1 << 18))
        peak = np.argmax(spec) * cfg.sample_rate / (1 << 18)
        assert abs(peak - hz) < 1.0
    short = ShapesConfig(frames=9, fps=4.0, sample_rate=8000)
    assert syn.render_audio("circle", short).shape == (18000,)


def test_render_is_seeded_and_varied():
    a = render_clip("red", "circle", "left", np.random.default_rng(7))
    b = render_clip("red", "circle", "left", np.random.default_rng(7))
    c = render_clip("red", "circle", "left", np.random.default_rng(8))
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])


def test_other_sizes():
    cfg = ShapesConfig(size=32, frames=5, fps=4.0)
    frames, audio = render_clip("blue", "square", "down", np.random.default_rng(0), cfg)
    assert frames.shape == (5, 32, 32, 3)
    assert audio.shape == (int(round(5 / 4.0 * 16000)),)


def test_shape_width_and_fixed_background():
    wide = ShapesConfig(size=32, frames=5, shape_width=0.4, background_levels=(24, 24))
    narrow = ShapesConfig(size=32, frames=5, shape_width=0.2, background_levels=(24, 24))
    areas = {}
    for name, cfg in (("wide", wide), ("narrow", narrow)):
        for seed in range(3):
            frames, _ = render_clip("green", "square", "right", np.random.default_rng(seed), cfg)
            assert (frames[:, 0, 0] == 24).all()  # the one background level, every clip
            areas.setdefault(name, []).append(_shape_mask(frames).sum(axis=(1, 2)).mean())
    ratio = np.mean(areas["wide"]) / np.mean(areas["narrow"])
    assert 3.0 < ratio < 5.0, ratio  # (0.4 / 0.2)^2 = 4


def test_jitter_scales_the_per_clip_layout():
    still = ShapesConfig(size=32, frames=5, background_levels=(24, 24), jitter=0.0)
    half = ShapesConfig(size=32, frames=5, background_levels=(24, 24), jitter=0.5)
    full = ShapesConfig(size=32, frames=5, background_levels=(24, 24))
    spread = {}
    for name, cfg in (("still", still), ("half", half), ("full", full)):
        clips = [render_clip("red", "circle", "up", np.random.default_rng(seed), cfg)[0] for seed in range(6)]
        spread[name] = max(np.abs(c.astype(int) - clips[0].astype(int)).max() for c in clips)
    assert spread["still"] == 0  # every clip of a combination alike
    assert 0 < spread["half"] and 0 < spread["full"]
    # jitter scales the same draws: a seed moves the shape the same way, half as far
    x = np.array([[_shape_mask(render_clip("red", "circle", "up", np.random.default_rng(seed), c)[0])[0].nonzero()[1].mean()
                   for c in (half, full)] for seed in range(8)])
    assert np.corrcoef(x[:, 0], x[:, 1])[0, 1] > 0.9
    assert 0.3 < np.ptp(x[:, 0]) / np.ptp(x[:, 1]) < 0.7


def test_captions():
    seen_templates = set()
    for i, (c, s, d) in enumerate(ALL_COMBOS * 3):
        cap = make_caption(c, s, d, np.random.default_rng(i))
        words = cap.replace(",", " ").split()
        assert c in words and s in words
        assert any(w.startswith(d) for w in words), cap
        seen_templates.add(cap.replace(c, "C").replace(s, "S"))
    assert len({t for t in seen_templates}) >= 4 * 4  # several templates, several direction phrasings
    assert make_caption("red", "circle", "left", np.random.default_rng(3)) == make_caption(
        "red", "circle", "left", np.random.default_rng(3)
    )
    with pytest.raises(UserError):
        make_caption("purple", "circle", "left", np.random.default_rng(0))


def test_config_validation():
    for bad in (
        dict(size=8),
        dict(frames=1),
        dict(fps=0),
        dict(sample_rate=100),
        dict(val_fraction=-0.1),
        dict(heldout_fraction=1.0),
        dict(val_fraction=0.5, heldout_fraction=0.5),
        dict(shape_width=0.05),
        dict(shape_width=0.5),
        dict(background_levels=(30, 20)),
        dict(background_levels=(10,)),
        dict(background_levels=(10.5, 20)),
        dict(jitter=-0.1),
        dict(jitter=1.5),
    ):
        with pytest.raises(UserError):
            ShapesConfig(**bad)
