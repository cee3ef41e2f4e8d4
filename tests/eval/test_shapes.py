"""The shapes oracle: reads every combination back through real MP4 files, and through degradations."""

import json
import shutil

import numpy as np
import pytest

from videopoet.data import io as media_io
from videopoet.data.synthetic import (
    ALL_COMBOS,
    CAPTION_TEMPLATES,
    COLORS,
    PITCH_HZ,
    ShapesConfig,
    make_caption,
    render_clip,
    write_shapes_dataset,
)
from videopoet.errors import UserError
from videopoet.eval import shapes as oracle
from videopoet.eval.shapes import (
    ShapesReading,
    analyze_file,
    evaluate,
    parse_prompt,
    read_audio_pitch,
    read_frames,
)

CFG = ShapesConfig()


def _clips(seed=0):
    for i, combo in enumerate(ALL_COMBOS):
        frames, audio = render_clip(*combo, np.random.default_rng([seed, i]), CFG)
        yield i, combo, frames, audio


@pytest.fixture(scope="module")
def combo_dir(tmp_path_factory):
    """All 48 combinations as MP4 (H.264 + AAC) files, with a metadata.jsonl."""
    root = tmp_path_factory.mktemp("combos")
    rows = []
    for i, (c, s, d), frames, audio in _clips(seed=3):
        rel = f"clips/combo_{i:02d}.mp4"
        media_io.write_video(root / rel, frames, fps=CFG.fps, audio=audio, sample_rate=CFG.sample_rate)
        rows.append({"file": rel, "color": c, "shape": s, "direction": d, "pitch_hz": PITCH_HZ[s]})
    (root / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root, rows


def test_analyze_file_reads_all_48_combinations(combo_dir):
    root, rows = combo_dir
    for row in rows:
        r = analyze_file(root / row["file"])
        assert (r.color, r.shape, r.direction) == (row["color"], row["shape"], row["direction"]), (row, r)
        assert r.has_video and r.has_audio and r.foreground_frames == CFG.frames
        assert abs(r.pitch_hz - row["pitch_hz"]) < 0.02 * row["pitch_hz"]
        assert r.pitch_shape == row["shape"]


def test_evaluate_with_metadata(combo_dir):
    root, rows = combo_dir
    result = evaluate(root / "clips", metadata=root / "metadata.jsonl")
    json.dumps(result)  # JSON-able
    assert result["num_files"] == 48
    assert result["accuracy"] == {"color": 1.0, "shape": 1.0, "direction": 1.0, "pitch": 1.0, "all": 1.0}
    assert result["counts"]["all"] == 48
    f0 = result["files"][0]
    assert f0["expected"]["color"] == rows[0]["color"] and f0["correct"]["all"] is True
    assert f0["reading"]["pitch_shape"] == rows[0]["shape"]


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
def test_read_frames_survives_blur_noise_and_brightness(shift):
    rng = np.random.default_rng(42)
    for _, (c, s, d), frames, audio in _clips(seed=4):
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


def test_read_audio_pitch_edge_cases():
    sr = 16000
    assert read_audio_pitch(np.zeros(16000, np.float32), sr) is None
    assert read_audio_pitch(np.zeros(10, np.float32), sr) is None
    t = np.arange(sr) / sr
    for hz in (262.0, 300.0, 659.0, 1000.0):
        assert abs(read_audio_pitch(0.3 * np.sin(2 * np.pi * hz * t), sr) - hz) < 0.5
    stereo = np.stack([0.3 * np.sin(2 * np.pi * 392 * t)] * 2)
    assert abs(read_audio_pitch(stereo, sr) - 392) < 0.5
    assert oracle.pitch_to_shape(400.0) == "square"
    assert oracle.pitch_to_shape(None) is None


def test_parse_prompt():
    for i, (c, s, d) in enumerate(ALL_COMBOS * 2):
        assert parse_prompt(make_caption(c, s, d, np.random.default_rng(i))) == {
            "color": c,
            "shape": s,
            "direction": d,
        }
    assert len(CAPTION_TEMPLATES) >= 4
    assert parse_prompt("A Yellow TRIANGLE going to the left.") == {
        "color": "yellow",
        "shape": "triangle",
        "direction": "left",
    }
    assert parse_prompt("blue squares drifting upward")["direction"] == "up"
    assert parse_prompt("red disc heading rightwards")["shape"] == "circle"
    assert parse_prompt("a red circle") == {"color": "red", "shape": "circle", "direction": None}
    with pytest.raises(UserError, match="names no color"):
        parse_prompt("a cat sitting on a mat")
    with pytest.raises(UserError, match="more than one color"):
        parse_prompt("a red and blue circle moving up")


def test_evaluate_with_prompt_and_no_audio(tmp_path):
    frames, audio = render_clip("red", "circle", "right", np.random.default_rng(1), CFG)
    with_audio = tmp_path / "a.mp4"
    no_audio = tmp_path / "b.mp4"
    media_io.write_video(with_audio, frames, fps=CFG.fps, audio=audio, sample_rate=CFG.sample_rate)
    media_io.write_video(no_audio, frames, fps=CFG.fps)

    r = analyze_file(no_audio)
    assert isinstance(r, ShapesReading) and r.has_audio is False and r.pitch_hz is None
    assert (r.color, r.shape, r.direction) == ("red", "circle", "right")

    res = evaluate([with_audio, no_audio], prompt="a red circle moving right")
    assert res["accuracy"] == {"color": 1.0, "shape": 1.0, "direction": 1.0, "pitch": 1.0, "all": 1.0}
    assert res["counts"]["pitch"] == 1  # pitch is only scored where there is an audio track

    res = evaluate(with_audio, prompt="red square moves left")
    assert res["accuracy"] == {"color": 1.0, "shape": 0.0, "direction": 0.0, "pitch": 0.0, "all": 0.0}
    assert res["files"][0]["correct"]["color"] is True

    res = evaluate(with_audio, prompt="something red")  # only the color is expected
    assert res["accuracy"]["all"] == 1.0 and res["accuracy"]["shape"] is None

    res = evaluate(with_audio)  # readings only
    assert res["accuracy"]["all"] is None and res["files"][0]["reading"]["color"] == "red"
    json.dumps(res)

    with pytest.raises(UserError):
        evaluate(with_audio, prompt="a dog")
    with pytest.raises(UserError):
        evaluate(tmp_path / "missing.mp4", prompt="a red circle")


def test_evaluate_metadata_matching(combo_dir, tmp_path):
    root, rows = combo_dir
    # Outside the metadata's folder: matched by a unique basename.
    outside = tmp_path / rows[5]["file"].split("/")[-1]
    shutil.copy(root / rows[5]["file"], outside)
    res = evaluate([outside], metadata=root / "metadata.jsonl")
    assert res["files"][0]["expected"]["shape"] == rows[5]["shape"] and res["accuracy"]["all"] == 1.0
    # A folder holding metadata.jsonl works as the metadata argument.
    assert evaluate(root / rows[0]["file"], metadata=root)["accuracy"]["all"] == 1.0
    # Not listed: a clear error.
    stray = tmp_path / "stray.mp4"
    shutil.copy(root / rows[0]["file"], stray)
    with pytest.raises(UserError, match="not listed"):
        evaluate([stray], metadata=root / "metadata.jsonl")
    with pytest.raises(UserError, match="not both"):
        evaluate([stray], metadata=root / "metadata.jsonl", prompt="a red circle")
    with pytest.raises(UserError):
        evaluate([stray], metadata=tmp_path / "nope.jsonl")


def test_evaluate_metadata_with_prompts_only(tmp_path):
    frames, audio = render_clip("yellow", "triangle", "down", np.random.default_rng(2), CFG)
    media_io.write_video(
        tmp_path / "gen" / "x.mp4", frames, fps=CFG.fps, audio=audio, sample_rate=CFG.sample_rate
    )
    (tmp_path / "gen" / "prompts.jsonl").write_text(
        json.dumps({"file": "x.mp4", "prompt": "a yellow triangle moving down"}) + "\n"
    )
    res = evaluate(tmp_path / "gen" / "x.mp4", metadata=tmp_path / "gen" / "prompts.jsonl")
    assert res["accuracy"] == {"color": 1.0, "shape": 1.0, "direction": 1.0, "pitch": 1.0, "all": 1.0}


def test_written_dataset_scores_perfectly(tmp_path):
    out = write_shapes_dataset(tmp_path / "ds", 12, seed=9, progress=False)
    res = evaluate(out / "clips", metadata=out / "metadata.jsonl")
    assert res["num_files"] == 12
    assert res["accuracy"] == {"color": 1.0, "shape": 1.0, "direction": 1.0, "pitch": 1.0, "all": 1.0}


def test_format_report_lists_files_and_accuracy(tmp_path) -> None:
    from videopoet.data.synthetic import write_shapes_dataset
    from videopoet.eval.shapes import format_report

    out = write_shapes_dataset(tmp_path / "ds", num_clips=2, seed=3, progress=False)
    result = evaluate(sorted((out / "clips").glob("*.mp4")), metadata=out / "metadata.jsonl")
    text = format_report(result)
    assert "clip_00000.mp4" in text and "clip_00001.mp4" in text
    assert "accuracy: color 100.0% (2)" in text


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
