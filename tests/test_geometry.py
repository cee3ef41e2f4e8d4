"""The clip geometry: its checks, and the value it hands each dependent key (how the config loader
applies it is in tests/test_config.py)."""

from __future__ import annotations

import pytest

from videopoet.geometry import CLIP_KEYS, ClipConfig


def test_the_values_each_dependent_key_gets() -> None:
    clip = ClipConfig(frames=9, fps=4.0, height=32, width=32, sample_rate=24000)
    values = clip.section_values()
    assert set(values) == {key for keys in CLIP_KEYS.values() for key in keys}
    assert values["ingest.size"] == [32, 32] and values["shapes.size"] == 32 and values["video_tokenizer.fps"] == 4.0
    assert values["audio_tokenizer.model.sample_rate"] == 24000 and clip.seconds == 2.25


def test_bad_geometry() -> None:
    with pytest.raises(ValueError, match="square"):
        ClipConfig(height=32, width=48).section_values()
    for bad in ({"frames": 0}, {"fps": 0.0}, {"width": 0}, {"sample_rate": 0}):
        with pytest.raises(ValueError, match="positive"):
            ClipConfig(**bad)
