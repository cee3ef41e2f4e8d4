"""The shapes oracle's reader: every combination back through real MP4 files, through degradations, and
squares with rounded corners."""

import numpy as np
import pytest

from videopoet.data.synthetic import COLORS, PITCH_HZ, ShapesConfig, render_clip
from videopoet.errors import UserError
from videopoet.eval.shapes_reader import analyze_file, pitch_to_shape, read_frames
from videopoet.metrics.audio import read_audio_pitch

CFG = ShapesConfig()


@pytest.mark.slow  # every combination
def test_analyze_file_reads_all_48_combinations(combo_dir):
    root, rows = combo_dir
    for row in rows:
        r = analyze_file(root / row["file"])
        assert (r.color, r.shape, r.direction) == (row["color"], row["shape"], row["direction"]), (row, r)
        assert r.has_video and r.has_audio and r.foreground_frames == CFG.frames
        assert abs(r.pitch_hz - row["pitch_hz"]) < 0.02 * row["pitch_hz"]
        assert r.pitch_shape == row["shape"]


def _gaussian_blur(x: np.ndarray) -> np.ndarray:
    """Separable [1, 4, 6, 4, 1] / 16 gaussian over H and W (edge padded)."""
    k = np.array([1, 4, 6, 4, 1], np.float64) / 16.0
    for axis in (1, 2):
        pad = [(0, 0)] * 4
        pad[axis] = (2, 2)
        p = np.pad(x, pad, mode="edge")
        n = x.shape[axis]
        x = sum(k[j] * np.take(p, np.arange(j, j + n), axis=axis) for j in range(5))
    return x


def _degrade(frames, rng, shift):
    x = _gaussian_blur(frames.astype(np.float64))
    x = x + rng.normal(0.0, 10.0, x.shape) + shift
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("shift", [15.0, -15.0])
@pytest.mark.slow  # every combination
def test_read_frames_survives_blur_noise_and_brightness(shift, render_combos):
    rng = np.random.default_rng(42)
    for _, (c, s, d), frames, audio in render_combos(seed=4):
        r = read_frames(_degrade(frames, rng, shift))
        assert (r.color, r.shape, r.direction) == (c, s, d)
        noisy = audio + rng.normal(0.0, 0.1, audio.shape).astype(np.float32)
        assert abs(read_audio_pitch(noisy, CFG.sample_rate) - PITCH_HZ[s]) < 0.02 * PITCH_HZ[s]


def test_read_frames_float_and_single_frame():
    frames, _ = render_clip("green", "triangle", "up", np.random.default_rng(0), CFG)
    r = read_frames(frames.astype(np.float32) / 255.0)
    assert (r.color, r.shape, r.direction) == ("green", "triangle", "up")
    one = read_frames(frames[5])
    assert (one.color, one.shape, one.direction) == ("green", "triangle", None)
    assert one.pitch_hz is None and one.pitch_shape is None


def test_no_foreground_and_static_shape():
    empty = np.full((5, 64, 64, 3), 30, np.uint8)
    r = read_frames(empty)
    assert (r.color, r.shape, r.direction, r.foreground_frames) == (None, None, None, 0)
    noisy = np.clip(30 + np.random.default_rng(0).normal(0, 10, (5, 64, 64, 3)), 0, 255).astype(np.uint8)
    assert read_frames(noisy).color is None
    # A shape that does not move has no direction.
    frames, _ = render_clip("blue", "square", "left", np.random.default_rng(0), CFG)
    still = np.repeat(frames[:1], 9, axis=0)
    r = read_frames(still)
    assert (r.color, r.shape, r.direction) == ("blue", "square", None)
    # The shape shows up only in some frames: still read.
    part = frames.copy()
    part[:4] = part[0, 0, 0]
    assert read_frames(part).direction == "left"
    with pytest.raises(UserError):
        read_frames(np.zeros((4, 8, 8), np.uint8))


def test_pitch_to_shape():
    assert pitch_to_shape(400.0) == "square"
    assert pitch_to_shape(None) is None


def _rounded_square_clip(corner: float, size: int = 32, side: float = 9.6, ss: int = 8) -> np.ndarray:
    """A red square moving right at the demo's scale, its corners rounded with radius `corner * side` (a
    video tokenizer's decoder rounds them so); corner 0.5 is a circle."""
    c = (np.arange(size * ss) + 0.5) / ss
    y, x = np.meshgrid(c, c, indexing="ij")
    half, r = side / 2, corner * side
    frames = []
    for t in range(17):
        dx, dy = np.abs(x - (8.3 + 0.9 * t)), np.abs(y - 16.2)
        qx, qy = np.maximum(dx - (half - r), 0), np.maximum(dy - (half - r), 0)
        inside = (dx <= half) & (dy <= half) & (qx**2 + qy**2 <= r * r)
        cover = inside.reshape(size, ss, size, ss).mean(axis=(1, 3))[..., None]
        frames.append(20 * (1 - cover) + np.array(COLORS["red"]) * cover)
    return np.clip(np.rint(frames), 0, 255).astype(np.uint8)


def test_decoded_squares_with_rounded_corners_still_read_as_squares():
    for corner in (0.0, 0.2, 0.3):
        assert read_frames(_rounded_square_clip(corner)).shape == "square", corner
    assert read_frames(_rounded_square_clip(0.5)).shape == "circle"
