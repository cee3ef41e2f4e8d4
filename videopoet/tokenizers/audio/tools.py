"""File-level use of a trained audio tokenizer (what `videopoet tokenizer encode|decode|eval audio` call).

Input files may be audio or video (their first audio stream); `io.read_audio` down-mixes and resamples to
the codec's rate. Any length encodes and decodes in bounded memory (the model's chunked `encode_long` /
`decode_long`). Silence and clipping are fine (samples are clamped); a file without an audio stream or
with NaN/inf samples stops with a one-line UserError.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from videopoet.errors import UserError
from videopoet.tokenizers.audio.model import AudioInputError, AudioTokenizer

TOKENS_FORMAT = "videopoet-audio-tokens"
CHUNK_SECONDS = 30.0  # chunk length of encode_long / decode_long: bounds memory for any input length


def load_audio_tokenizer(ckpt: str | Path, device: str = "cpu") -> AudioTokenizer:
    """The audio tokenizer of a trained folder (config.json + model.safetensors), in eval mode."""
    from videopoet.tokenizers.checkpoint import load_tokenizer

    return load_tokenizer(ckpt, "audio", device)


def read_input(path: str | Path, sample_rate: int, start: float = 0.0, seconds: float | None = None) -> np.ndarray:
    """float32 mono [N] of the audio of `path` at `sample_rate`; clear errors for a missing audio stream,
    NaN/inf samples, or audio shorter than asked for."""
    from videopoet.media import read_audio

    wav = read_audio(path, start, seconds, sample_rate)
    if wav.size == 0:
        raise AudioInputError(f"{path}: no audio samples from {start:g} s on")
    if not np.isfinite(wav).all():
        bad = int((~np.isfinite(wav)).sum())
        raise AudioInputError(f"{path}: audio contains {bad} NaN or infinite samples; fix the source audio")
    return np.clip(wav, -1.0, 1.0).astype(np.float32)


def encode_file(
    ckpt: str | Path, input: str | Path, out_npz: str | Path, start: float = 0.0, seconds: float | None = None
) -> dict[str, Any]:
    """Encode the audio of `input` (from `start` s, `seconds` long or to the end) into `out_npz`.

    The npz holds `codes` (int16/int32 `[levels, frames]`, level ids 0..C-1, coarse to fine), `sample_rate`,
    `hop`, `codebook_size`, `num_samples`, `start_s` and `format`. Returns a summary dict."""
    model = load_audio_tokenizer(ckpt)
    wav = read_input(input, model.sample_rate, start, seconds)
    if model.frames_for(wav.size) == 0:
        raise AudioInputError(f"{input}: {wav.size / model.sample_rate:.4f} s of audio is shorter than one frame "
                              f"({model.hop / model.sample_rate:g} s)")  # fmt: skip
    codes = model.encode_long(wav, chunk_seconds=CHUNK_SECONDS)
    dtype = np.int16 if model.config.codebook_size <= 32768 else np.int32
    out = Path(out_npz)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(
        out,
        codes=codes.astype(dtype),
        sample_rate=model.sample_rate,
        hop=model.hop,
        codebook_size=model.config.codebook_size,
        num_samples=wav.size,
        start_s=float(start),
        format=TOKENS_FORMAT,
    )
    return {
        "out": str(out),
        "levels": int(codes.shape[0]),
        "frames": int(codes.shape[1]),
        "seconds": wav.size / model.sample_rate,
        "bitrate_kbps": model.config.bitrate_kbps(),
        "tokens_per_second": model.config.tokens_per_second,
    }


def _load_tokens(path: str | Path) -> dict[str, Any]:
    try:
        with np.load(path, allow_pickle=False) as data:
            tokens = {k: data[k] for k in data.files}
    except FileNotFoundError:
        raise UserError(f"tokens file not found: {path}") from None
    except Exception as e:  # not a zip / corrupt
        raise UserError(f"{path} is not a tokens .npz: {e}") from None
    if "codes" not in tokens or str(tokens.get("format", "")) != TOKENS_FORMAT:
        raise UserError(f"{path} is not an audio tokens .npz (made by `videopoet tokenizer encode audio`)")
    return tokens


def decode_file(ckpt: str | Path, tokens_npz: str | Path, out_path: str | Path) -> dict[str, Any]:
    """Decode an audio tokens npz to `out_path` (WAV or FLAC, by extension) at the codec's sample rate."""
    from videopoet.media import write_audio

    model = load_audio_tokenizer(ckpt)
    tokens = _load_tokens(tokens_npz)
    c = model.config
    if int(tokens["codebook_size"]) != c.codebook_size or int(tokens["hop"]) != c.hop or \
            int(tokens["sample_rate"]) != c.sample_rate:  # fmt: skip
        raise UserError(
            f"{tokens_npz} was encoded by another codec ({int(tokens['codebook_size'])} codes, hop "
            f"{int(tokens['hop'])}, {int(tokens['sample_rate'])} Hz) than {ckpt} ({c.codebook_size} codes, hop "
            f"{c.hop}, {c.sample_rate} Hz)"
        )
    codes = tokens["codes"].astype(np.int64)
    wav = model.decode_long(codes, chunk_seconds=CHUNK_SECONDS, num_samples=int(tokens["num_samples"]))
    write_audio(out_path, wav, model.sample_rate)
    return {"out": str(out_path), "seconds": wav.size / model.sample_rate, "sample_rate": model.sample_rate}


def evaluate_files(
    ckpt: str | Path, inputs: list[str | Path], seconds: float | None = None, opus: bool = True
) -> dict[str, Any]:
    """Reconstruction quality and speed of the tokenizer on `inputs` (each read whole, or its first
    `seconds`): per file and averaged, SI-SDR (dB), mel distance, encode/decode real-time factors (seconds of
    audio per second of compute: higher is faster), codebook usage per level, and the same SI-SDR / mel
    distance for Opus at the codec's bitrate (clamped to Opus' 6 kbps minimum; the rate used is reported)."""
    from videopoet.media.codecs import opus_reference
    from videopoet.metrics.audio import mel_distance, si_sdr
    from videopoet.tokenizers.audio.rvq import codebook_usage

    if not inputs:
        raise UserError("no input files to evaluate")
    model = load_audio_tokenizer(ckpt)
    c, sr = model.config, model.sample_rate
    files, all_codes = [], []
    for path in inputs:
        wav = read_input(path, sr, 0.0, None)  # whole file, then its first `seconds`
        if seconds is not None:
            wav = wav[: round(seconds * sr)]
        n = model.samples_for(model.frames_for(wav.size))
        if n == 0:
            raise AudioInputError(f"{path}: shorter than one frame ({model.hop / sr:g} s)")
        wav = wav[:n]
        t0 = time.perf_counter()
        codes = model.encode_long(wav, chunk_seconds=CHUNK_SECONDS)
        t1 = time.perf_counter()
        recon = model.decode_long(codes, chunk_seconds=CHUNK_SECONDS, num_samples=n)
        t2 = time.perf_counter()
        all_codes.append(codes)
        dur = n / sr
        row: dict[str, Any] = {
            "input": str(path),
            "seconds": dur,
            "si_sdr": si_sdr(wav, recon),
            "mel_distance": mel_distance(wav, recon, sr),
            "encode_rtf": dur / max(t1 - t0, 1e-9),
            "decode_rtf": dur / max(t2 - t1, 1e-9),
        }
        if opus:
            ref = opus_reference(wav, sr, c.bitrate_kbps())
            row.update(opus_si_sdr=ref["si_sdr"], opus_mel_distance=ref["mel_distance"],
                       opus_bitrate_kbps=ref["bitrate_kbps"])  # fmt: skip
        files.append(row)
    codes_all = np.concatenate(all_codes, axis=-1)
    usage = codebook_usage(codes_all, c.codebook_size)

    def mean(key: str) -> float:
        return float(np.mean([f[key] for f in files]))

    result: dict[str, Any] = {
        "checkpoint": str(ckpt),
        "sample_rate": sr,
        "bitrate_kbps": c.bitrate_kbps(),
        "tokens_per_second": c.tokens_per_second,
        "si_sdr": mean("si_sdr"),
        "mel_distance": mean("mel_distance"),
        "encode_rtf": mean("encode_rtf"),
        "decode_rtf": mean("decode_rtf"),
        "codebook_usage": [u["fraction_used"] for u in usage],
        "codebook_perplexity": [u["perplexity"] for u in usage],
    }
    if opus:
        result.update(opus_si_sdr=mean("opus_si_sdr"), opus_mel_distance=mean("opus_mel_distance"),
                      opus_bitrate_kbps=files[0]["opus_bitrate_kbps"])  # fmt: skip
    result["files"] = files
    return result
