"""Sound: read any file's first audio stream as float32 mono at a sample rate, write WAV or FLAC.

A waveform is a float32 mono array ``[N]`` in [-1, 1]; reading averages channels and resamples with
``torchaudio.functional.resample``.
"""

from __future__ import annotations

import math
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import torch
import torchaudio.functional as AF

from videopoet.media.container import MediaError, NotEnoughFramesError, PathLike, create_media, decode_timed

_AUDIO_EXTENSIONS = {".wav": ("wav", "pcm_s16le"), ".flac": ("flac", "flac")}


def read_audio(
    path: PathLike,
    start_s: float = 0.0,
    duration_s: float | None = None,
    sample_rate: int = 16000,
    pad: bool = False,
) -> np.ndarray:
    """Read the first audio stream as float32 mono ``[N]`` in [-1, 1] at ``sample_rate``.

    Channels are averaged, then resampled with ``torchaudio.functional.resample``. With ``duration_s``,
    exactly ``round(duration_s * sample_rate)`` samples are returned; if the file ends first, raise
    `NotEnoughFramesError`, or with ``pad=True`` pad with silence. Without it, read to the end.
    """
    if start_s < 0:
        raise ValueError(f"start_s must be >= 0, got {start_s}")
    if duration_s is not None and duration_s < 0:
        raise ValueError(f"duration_s must be >= 0, got {duration_s}")
    if sample_rate < 1:
        raise ValueError(f"sample_rate must be >= 1, got {sample_rate}")

    # Decode to mono float32 at the source rate; `seg` starts at time `seg_t0`.
    pieces: list[np.ndarray] = []
    seg_t0: float | None = None
    rate = 0
    have = 0
    resampler = None
    for t, _dur, frame in decode_timed(path, "audio", start_s):
        if resampler is None or frame.sample_rate != rate:
            if resampler is not None:
                break  # the rate changed mid-stream; keep what we have rather than mix rates
            rate = frame.sample_rate
            seg_t0 = t
            resampler = av.AudioResampler(format="fltp", rate=rate)
        for converted in resampler.resample(frame):
            mono = converted.to_ndarray().astype(np.float32, copy=False).mean(axis=0)
            pieces.append(mono)
            have += mono.shape[0]
        if duration_s is not None and seg_t0 + have / rate > start_s + duration_s + 0.1:
            break  # enough (0.1 s is margin for the resampling filter)
    if resampler is not None:
        for converted in resampler.resample(None):
            pieces.append(converted.to_ndarray().astype(np.float32, copy=False).mean(axis=0))
    if seg_t0 is None or not pieces:
        raise NotEnoughFramesError(f"{path}: no audio samples could be decoded")
    seg = np.concatenate(pieces)

    # Sample index of start_s in `seg`; audio that starts after start_s is preceded by silence.
    start = round((start_s - seg_t0) * rate)
    if start < 0:
        seg = np.concatenate([np.zeros(-start, np.float32), seg])
        start = 0
    available_s = (seg.shape[0] - start) / rate
    if duration_s is None:
        if available_s <= 0:
            raise NotEnoughFramesError(f"{path}: start {start_s:g} s is past the end of the audio")
        duration_s = available_s
    elif duration_s > available_s + 1.0 / sample_rate and not pad:
        raise NotEnoughFramesError(
            f"{path}: asked for {duration_s:g} s of audio from {start_s:g} s, but only "
            f"{max(available_s, 0.0):.3f} s are available (pad=True pads with silence)"
        )
    n_out = round(duration_s * sample_rate)

    # Resample the needed span plus a margin on each side, so the filter sees real neighbours.
    margin = max(64, math.ceil(32 * rate / sample_rate))
    lo = max(0, start - margin)
    hi = min(seg.shape[0], start + math.ceil(n_out * rate / sample_rate) + margin)
    x = seg[lo:hi]
    if rate != sample_rate and x.shape[0] > 0:
        with torch.autocast("cpu", enabled=False):  # a caller's bf16 autocast must not reach the samples
            x = AF.resample(torch.from_numpy(np.ascontiguousarray(x)), rate, sample_rate).numpy()
    offset = round((start - lo) * sample_rate / rate)
    wav = x[offset : offset + n_out]
    if wav.shape[0] < n_out:
        wav = np.concatenate([wav, np.zeros(n_out - wav.shape[0], np.float32)])
    return np.clip(wav, -1.0, 1.0).astype(np.float32, copy=False)


def mono_float(wav: np.ndarray, what: str) -> np.ndarray:
    wav = np.asarray(wav)
    if wav.ndim != 1:
        raise ValueError(f"{what} must be mono [N], got shape {tuple(wav.shape)}")
    return np.clip(np.nan_to_num(wav.astype(np.float32, copy=False)), -1.0, 1.0)


def write_audio(path: PathLike, wav: np.ndarray, sample_rate: int) -> None:
    """Write a float32 mono waveform in [-1, 1] as 16-bit WAV or FLAC, chosen by the file extension."""
    ext = Path(path).suffix.lower()
    if ext not in _AUDIO_EXTENSIONS:
        raise MediaError(f"{path}: unsupported audio extension '{ext}' (use .wav or .flac)")
    if sample_rate < 1:
        raise ValueError(f"sample_rate must be >= 1, got {sample_rate}")
    samples = np.round(mono_float(wav, "wav") * 32767.0).astype(np.int16)
    fmt, codec = _AUDIO_EXTENSIONS[ext]
    with create_media(path, fmt) as container:
        stream = container.add_stream(codec, rate=sample_rate, layout="mono")
        stream.format = "s16"
        stream.codec_context.time_base = Fraction(1, sample_rate)
        step = sample_rate  # one second per frame; the encoder regroups into its own frame size
        for pos in range(0, samples.shape[0], step):
            frame = av.AudioFrame.from_ndarray(samples[None, pos : pos + step], format="s16", layout="mono")
            frame.sample_rate = sample_rate
            frame.pts = pos
            frame.time_base = Fraction(1, sample_rate)
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
