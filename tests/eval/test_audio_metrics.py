"""SI-SDR, mel distance and the Opus reference."""

from __future__ import annotations

import numpy as np
import pytest

from videopoet.eval.audio_metrics import mel_distance, opus_reference, si_sdr

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


@pytest.mark.parametrize("sr,kbps", [(16000, 0.8), (24000, 12.0), (22050, 8.0)])
def test_opus_reference(sr: int, kbps: float) -> None:
    tone = (0.5 * np.sin(2 * np.pi * 392 * np.arange(sr) / sr)).astype(np.float32)
    ref = opus_reference(tone, sr, kbps)
    assert ref["bitrate_kbps"] == max(kbps, 6.0)  # clamped to Opus' minimum
    assert ref["si_sdr"] > 10 and np.isfinite(ref["mel_distance"])
