"""Fixtures shared by the shapes oracle's tests."""

import json

import numpy as np
import pytest

from videopoet import media as media_io
from videopoet.data.synthetic import ALL_COMBOS, PITCH_HZ, ShapesConfig, render_clip

CFG = ShapesConfig()


def all_combos(seed: int = 0):
    """(index, combo, frames, audio) of every (color, shape, direction) combination, rendered."""
    for i, combo in enumerate(ALL_COMBOS):
        frames, audio = render_clip(*combo, np.random.default_rng([seed, i]), CFG)
        yield i, combo, frames, audio


@pytest.fixture(scope="session")
def render_combos():
    """`all_combos`, for tests that render every combination at their own seed."""
    return all_combos


@pytest.fixture(scope="session")
def combo_dir(tmp_path_factory):
    """All 48 combinations as MP4 (H.264 + AAC) files, with a metadata.jsonl."""
    root = tmp_path_factory.mktemp("combos")
    rows = []
    for i, (c, s, d), frames, audio in all_combos(seed=3):
        rel = f"clips/combo_{i:02d}.mp4"
        media_io.write_video(root / rel, frames, fps=CFG.fps, audio=audio, sample_rate=CFG.sample_rate)
        rows.append({"file": rel, "color": c, "shape": s, "direction": d, "pitch_hz": PITCH_HZ[s]})
    (root / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root, rows
