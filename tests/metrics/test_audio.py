"""SI-SDR, mel distance and the pitch of a tone."""

from __future__ import annotations

import numpy as np
import pytest

from videopoet.metrics.audio import mel_distance, read_audio_pitch, si_sdr

SR = 16000
TONE = (0.5 * np.sin(2 * np.pi * 392 * np.arange(SR) / SR)).astype(np.float32)


def test_si_sdr() -> None:
    noise = np.random.default_rng(0).standard_normal(SR).astype(np.float32)
    assert si_sdr(TONE, TONE) > 60
    assert si_sdr(TONE, 0.3 * TONE) > 60  # scale-invariant
    assert si_sdr(TONE, noise) < -10
    assert 5 < si_sdr(TONE, TONE + 0.1 * noise) < 15
    assert si_sdr(np.zeros(100), np.zeros(100)) == pytest.approx(0.0)  # silence: finite
    with pytest.raises(ValueError, match="NaN"):
        si_sdr(TONE, np.full(SR, np.nan))


def test_mel_distance() -> None:
    assert mel_distance(TONE, TONE, SR) == 0.0
    assert mel_distance(TONE, 0.5 * TONE, SR) > 0.5  # log(2) in every band
    assert mel_distance(TONE, TONE, 24000) == 0.0


def test_read_audio_pitch_edge_cases():
    sr = 16000
    assert read_audio_pitch(np.zeros(16000, np.float32), sr) is None
    assert read_audio_pitch(np.zeros(10, np.float32), sr) is None
    t = np.arange(sr) / sr
    for hz in (262.0, 300.0, 659.0, 1000.0):
        assert abs(read_audio_pitch(0.3 * np.sin(2 * np.pi * hz * t), sr) - hz) < 0.5
    stereo = np.stack([0.3 * np.sin(2 * np.pi * 392 * t)] * 2)
    assert abs(read_audio_pitch(stereo, sr) - 392) < 0.5
