"""Metrics: pure functions of arrays, below every other layer (no media I/O, no models).

`video`: PSNR, SSIM. `audio`: SI-SDR, log-mel distance, the dominant pitch of a tone.
"""

from videopoet.metrics.audio import mel_distance, read_audio_pitch, si_sdr
from videopoet.metrics.video import psnr, ssim

__all__ = ["mel_distance", "psnr", "read_audio_pitch", "si_sdr", "ssim"]
