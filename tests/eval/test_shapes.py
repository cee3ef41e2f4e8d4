"""The shapes oracle's scoring: prompts, metadata matching, reports."""

import json
import shutil

import numpy as np
import pytest

from videopoet import media as media_io
from videopoet.data.shapes_dataset import write_shapes_dataset
from videopoet.data.synthetic import (
    ALL_COMBOS,
    CAPTION_TEMPLATES,
    ShapesConfig,
    make_caption,
    render_clip,
)
from videopoet.errors import UserError
from videopoet.eval.shapes import evaluate, parse_prompt
from videopoet.eval.shapes_reader import ShapesReading, analyze_file

CFG = ShapesConfig()


@pytest.mark.slow  # every combination through MP4
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


@pytest.mark.slow  # every combination through MP4
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


@pytest.mark.slow  # every combination through MP4
def test_written_dataset_scores_perfectly(tmp_path):
    out = write_shapes_dataset(tmp_path / "ds", 12, seed=9, progress=False)
    res = evaluate(out / "clips", metadata=out / "metadata.jsonl")
    assert res["num_files"] == 12
    assert res["accuracy"] == {"color": 1.0, "shape": 1.0, "direction": 1.0, "pitch": 1.0, "all": 1.0}


def test_format_report_lists_files_and_accuracy(tmp_path) -> None:
    from videopoet.data.shapes_dataset import write_shapes_dataset
    from videopoet.eval.shapes import format_report

    out = write_shapes_dataset(tmp_path / "ds", num_clips=2, seed=3, progress=False)
    result = evaluate(sorted((out / "clips").glob("*.mp4")), metadata=out / "metadata.jsonl")
    text = format_report(result)
    assert "clip_00000.mp4" in text and "clip_00001.mp4" in text
    assert "accuracy: color 100.0% (2)" in text


