"""The shapes dataset on disk: splits and combinations, the written files, refusals and reuse, metadata."""

import json
from collections import Counter

import numpy as np
import pytest

from videopoet import media as media_io
from videopoet.data.shapes_dataset import generate_clips, read_metadata, write_shapes_dataset
from videopoet.data.synthetic import HELDOUT_COMBOS, PITCH_HZ, ShapesConfig
from videopoet.errors import UserError


def test_generate_clips_splits_and_combos():
    clips = list(generate_clips(100, seed=5))
    counts = Counter(c.split for c in clips)
    assert counts == {"train": 80, "val": 10, "heldout": 10}
    for clip in clips:
        combo = (clip.color, clip.shape, clip.direction)
        if clip.split == "heldout":
            assert combo in HELDOUT_COMBOS
        else:
            assert combo not in HELDOUT_COMBOS
        assert clip.pitch_hz == PITCH_HZ[clip.shape]
    # Training combos are balanced: cycles through all 42 before repeating.
    train_val = Counter((c.color, c.shape, c.direction) for c in clips if c.split != "heldout")
    assert len(train_val) == 42 and max(train_val.values()) - min(train_val.values()) <= 1
    assert len({(c.color, c.shape, c.direction) for c in clips if c.split == "heldout"}) == 6
    # One clip: at least one training clip, no others.
    assert [c.split for c in generate_clips(1, seed=0)] == ["train"]


def _write(tmp_path, name, n=6, seed=11, **kw):
    return write_shapes_dataset(tmp_path / name, n, seed, ShapesConfig(**kw), progress=False)


def test_write_dataset_layout_and_determinism(tmp_path, capsys):
    a = _write(tmp_path, "a", n=10)
    b = _write(tmp_path, "b", n=10)
    c = _write(tmp_path, "c", n=10, seed=12)
    assert capsys.readouterr().err == ""  # progress=False: no bar

    rows = [json.loads(line) for line in (a / "metadata.jsonl").read_text().splitlines()]
    assert len(rows) == 10
    assert [r["file"] for r in rows] == [f"clips/clip_{i:05d}.mp4" for i in range(10)]
    for r in rows:
        assert set(r) >= {"file", "caption", "color", "shape", "direction", "pitch_hz", "split"}
        assert r["split"] in {"train", "val", "heldout"}
        assert ((r["color"], r["shape"], r["direction"]) in HELDOUT_COMBOS) == (r["split"] == "heldout")
    assert Counter(r["split"] for r in rows) == {"train": 8, "val": 1, "heldout": 1}

    info = json.loads((a / "dataset.json").read_text())
    assert info["seed"] == 11 and info["num_clips"] == 10
    assert info["config"]["size"] == 64 and info["config"]["frames"] == 17
    assert [tuple(x) for x in info["heldout_combos"]] == list(HELDOUT_COMBOS)

    # Same seed: byte-identical files; another seed: different clips.
    for name in ["metadata.jsonl", "dataset.json"] + [r["file"] for r in rows]:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    assert (a / "metadata.jsonl").read_bytes() != (c / "metadata.jsonl").read_bytes()

    # The files are real H.264 + AAC clips of the configured shape.
    m = media_io.probe(a / rows[0]["file"])
    assert m.video[0].codec == "h264" and m.video[0].width == 64 and m.video[0].height == 64
    assert abs(m.video[0].fps - 8.0) < 1e-6
    assert m.audio[0].codec == "aac" and m.audio[0].sample_rate == 16000
    frames = media_io.read_clip(a / rows[0]["file"], 0.0, 17, 8.0)
    clip = next(iter(generate_clips(10, seed=11)))
    assert np.abs(frames.astype(int) - clip.frames.astype(int)).mean() < 3.0


def test_write_dataset_refusals_and_reuse(tmp_path):
    out = _write(tmp_path, "ds", n=3)
    before = (out / "clips" / "clip_00000.mp4").stat().st_mtime_ns
    # The same dataset again: a no-op.
    assert _write(tmp_path, "ds", n=3) == out
    assert (out / "clips" / "clip_00000.mp4").stat().st_mtime_ns == before
    # A different dataset in the same folder: refused, nothing touched.
    with pytest.raises(UserError, match="different shapes dataset"):
        _write(tmp_path, "ds", n=3, seed=12)
    with pytest.raises(UserError, match="different shapes dataset"):
        _write(tmp_path, "ds", n=4)
    # A folder with other things in it: refused.
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match="not empty"):
        _write(tmp_path, "other", n=2)
    assert (other / "notes.txt").read_text() == "mine"
    # A file where the folder should be: refused.
    (tmp_path / "afile").write_text("x")
    with pytest.raises(UserError):
        _write(tmp_path, "afile", n=2)
    # An interrupted write of ours (no dataset.json yet): overwritten.
    (out / "dataset.json").unlink()
    assert _write(tmp_path, "ds", n=3, seed=12) == out
    assert json.loads((out / "dataset.json").read_text())["seed"] == 12


def test_write_dataset_bad_counts(tmp_path):
    for n in (0, -3):
        with pytest.raises(UserError, match="num_clips"):
            write_shapes_dataset(tmp_path / "x", n, 0, progress=False)
    with pytest.raises(UserError, match="seed"):
        write_shapes_dataset(tmp_path / "x", 2, -1, progress=False)
    assert not (tmp_path / "x").exists()


def test_read_metadata(tmp_path):
    out = _write(tmp_path, "ds", n=2)
    assert len(read_metadata(out)) == 2
    assert read_metadata(out / "metadata.jsonl")[0]["file"] == "clips/clip_00000.mp4"
    with pytest.raises(UserError):
        read_metadata(tmp_path / "missing.jsonl")
