"""The H.264 and Opus references at a matched rate."""

from __future__ import annotations

import math

import numpy as np
import pytest

from videopoet.media.codecs import h264_reference, opus_reference


def _clip(seed: int = 0) -> np.ndarray:
    from videopoet.data.synthetic import ShapesConfig, render_frames

    return render_frames("red", "circle", "left", np.random.default_rng(seed), ShapesConfig(size=32, frames=5))


def test_h264_reference_at_matched_bpp() -> None:
    clip = _clip()
    low = h264_reference(clip, 8.0, 0.3)
    high = h264_reference(clip, 8.0, 3.0)
    assert all(math.isfinite(v) for v in (*low, *high))
    assert high[2] <= 3.0 and high[0] >= low[0]


@pytest.mark.parametrize("sr,kbps", [(16000, 0.8), (24000, 12.0), (22050, 8.0)])
def test_opus_reference(sr: int, kbps: float) -> None:
    tone = (0.5 * np.sin(2 * np.pi * 392 * np.arange(sr) / sr)).astype(np.float32)
    ref = opus_reference(tone, sr, kbps)
    assert ref["bitrate_kbps"] == max(kbps, 6.0)  # clamped to Opus' minimum
    assert ref["si_sdr"] > 10 and np.isfinite(ref["mel_distance"])
