"""Signals the media tests share."""

import numpy as np
import pytest


def _sine(freq: float, seconds: float, sample_rate: int, amp: float = 0.5) -> np.ndarray:
    t = np.arange(round(seconds * sample_rate)) / sample_rate
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def _peak_hz(wav: np.ndarray, sample_rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(wav * np.hanning(len(wav))))
    return float(np.argmax(spectrum)) * sample_rate / len(wav)


@pytest.fixture(scope="session")
def sine():
    """`sine(freq, seconds, sample_rate, amp=0.5)`: a float32 tone."""
    return _sine


@pytest.fixture(scope="session")
def peak_hz():
    """`peak_hz(wav, sample_rate)`: the frequency of the spectrum's peak."""
    return _peak_hz
