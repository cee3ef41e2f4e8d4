"""SI-SDR, mel distances, loudness and the pitch of a tone."""

from __future__ import annotations

import math

import numpy as np
import pytest

from videopoet.metrics.audio import (
    loudness_difference,
    loudness_lufs,
    mel_distance,
    multiscale_mel_distance,
    read_audio_pitch,
    si_sdr,
)

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


def test_multiscale_mel_distance() -> None:
    rng = np.random.default_rng(0)
    noise = rng.standard_normal(SR).astype(np.float32)
    assert multiscale_mel_distance(TONE, TONE, SR) == 0.0
    wide = 0.1 * noise  # energy in every band, none under the floor
    assert multiscale_mel_distance(wide, 0.5 * wide, SR) == pytest.approx(math.log10(2), abs=1e-3)  # log10(2) in every band
    assert 0 < multiscale_mel_distance(TONE, 0.5 * TONE, SR) < math.log10(2)  # empty bands sit at the floor
    quiet, loud = (multiscale_mel_distance(TONE, TONE + a * noise, SR) for a in (0.001, 0.03))
    assert 0 < quiet < loud  # more noise, larger distance
    assert multiscale_mel_distance(TONE, TONE, SR, windows=(2048,)) == 0.0
    hiss = 1e-6 * noise  # under 16-bit quantization noise: below the floor, it does not count
    assert multiscale_mel_distance(np.zeros(SR), hiss, SR) == 0.0
    assert multiscale_mel_distance(np.zeros(SR), hiss, SR, floor=1e-8) > 1.0
    assert multiscale_mel_distance(TONE[:100], 0.5 * TONE[:100], SR) > 0  # shorter than the longest window
    with pytest.raises(ValueError, match="empty"):
        multiscale_mel_distance(TONE[:0], TONE[:0], SR)


def test_loudness() -> None:
    noise = 0.05 * np.random.default_rng(1).standard_normal(3 * SR)
    assert loudness_difference(noise, noise, SR) == 0.0
    assert loudness_difference(noise, 2 * noise, SR) == pytest.approx(20 * math.log10(2), abs=0.05)  # +6 dB -> +6 LU
    assert loudness_difference(2 * noise, noise, SR) == pytest.approx(-20 * math.log10(2), abs=0.05)
    assert -40 < loudness_lufs(noise, SR) < -20
    silence = np.zeros(3 * SR)
    assert loudness_lufs(silence, SR) == -70.0 and loudness_difference(silence, silence, SR) == 0.0
    assert loudness_difference(noise, silence, SR) == pytest.approx(-70.0 - loudness_lufs(noise, SR))
    assert loudness_lufs(noise[:3000], SR) is None  # shorter than one 400 ms block
    assert math.isnan(loudness_difference(noise[:3000], noise[:3000], SR))


def test_read_audio_pitch_edge_cases():
    sr = 16000
    assert read_audio_pitch(np.zeros(16000, np.float32), sr) is None
    assert read_audio_pitch(np.zeros(10, np.float32), sr) is None
    t = np.arange(sr) / sr
    for hz in (262.0, 300.0, 659.0, 1000.0):
        assert abs(read_audio_pitch(0.3 * np.sin(2 * np.pi * hz * t), sr) - hz) < 0.5
    stereo = np.stack([0.3 * np.sin(2 * np.pi * 392 * t)] * 2)
    assert abs(read_audio_pitch(stereo, sr) - 392) < 0.5
