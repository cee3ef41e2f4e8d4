"""encode / decode / eval of audio files with a (tiny, untrained) audio tokenizer folder, and bad input."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from videopoet.data.synthetic import render_clip
from videopoet.errors import UserError
from videopoet.media import read_audio, write_audio, write_video
from videopoet.tokenizers.audio.model import AudioTokenizer, preset
from videopoet.tokenizers.audio.tools import decode_file, encode_file, evaluate_files
from videopoet.tokenizers.checkpoint import save_tokenizer


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("audio_tok")
    save_tokenizer(folder, AudioTokenizer(preset("tiny")), "audio")
    return folder


def write_float_wav(path: Path, wav: np.ndarray, sample_rate: int) -> None:
    """A 32-bit float WAV (format 3), which can hold NaN samples."""
    data = wav.astype("<f4").tobytes()
    header = b"RIFF" + struct.pack("<I", 36 + len(data)) + b"WAVEfmt " + struct.pack(
        "<IHHIIHH", 16, 3, 1, sample_rate, sample_rate * 4, 4, 32) + b"data" + struct.pack("<I", len(data))
    path.write_bytes(header + data)


def test_wav_round_trip_with_resampling(ckpt: Path, tmp_path: Path) -> None:
    t = np.arange(12000) / 8000.0  # 1.5 s at 8 kHz: resampled to 16 kHz
    write_audio(tmp_path / "in.wav", (0.4 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), 8000)
    info = encode_file(ckpt, tmp_path / "in.wav", tmp_path / "t.npz", start=0.25, seconds=1.0)
    assert info["levels"] == 2 and info["frames"] == 50 and info["tokens_per_second"] == 100
    codes = np.load(tmp_path / "t.npz")["codes"]
    assert codes.shape == (2, 50) and codes.min() >= 0 and codes.max() < 256
    decode_file(ckpt, tmp_path / "t.npz", tmp_path / "out.wav")
    assert read_audio(tmp_path / "out.wav", sample_rate=16000).shape == (16000,)
    with pytest.raises(UserError, match="not an audio tokens"):
        np.savez(tmp_path / "bad.npz", ids=np.zeros(3))
        decode_file(ckpt, tmp_path / "bad.npz", tmp_path / "x.wav")


def test_shapes_video_audio_round_trip(ckpt: Path, tmp_path: Path) -> None:
    frames, audio = render_clip("red", "circle", "left", np.random.default_rng(0))
    write_video(tmp_path / "clip.mp4", frames, 8.0, audio=audio, sample_rate=16000)
    info = encode_file(ckpt, tmp_path / "clip.mp4", tmp_path / "t.npz")
    assert info["frames"] >= 100  # ~2.125 s at 50 frames/s (AAC may add a little padding)
    decode_file(ckpt, tmp_path / "t.npz", tmp_path / "out.flac")
    assert read_audio(tmp_path / "out.flac").size == int(np.load(tmp_path / "t.npz")["num_samples"])


def test_eval_json_and_bad_input(ckpt: Path, tmp_path: Path) -> None:
    n = 16000
    tone = 0.5 * np.sin(2 * np.pi * 262 * np.arange(n) / 16000)
    write_audio(tmp_path / "tone.wav", tone.astype(np.float32), 16000)
    write_audio(tmp_path / "clipped.wav", np.clip(3 * tone, -1, 1).astype(np.float32), 16000)
    write_audio(tmp_path / "silence.wav", np.zeros(n, np.float32), 16000)
    wavs = [tmp_path / "tone.wav", tmp_path / "clipped.wav", tmp_path / "silence.wav"]
    result = evaluate_files(ckpt, wavs, seconds=5.0)  # at most 5 s: the 1 s files are scored whole
    text = json.dumps(result, allow_nan=False)  # every number finite
    keys = {"si_sdr", "mel_distance", "bitrate_kbps", "tokens_per_second", "codebook_usage", "encode_rtf",
            "decode_rtf", "opus_si_sdr", "opus_mel_distance", "opus_bitrate_kbps", "files"}
    assert keys <= set(json.loads(text))
    assert result["opus_bitrate_kbps"] == 6.0 and result["bitrate_kbps"] == pytest.approx(0.8)
    assert result["files"][0]["opus_si_sdr"] > 5  # Opus keeps a pure tone
    assert len(result["codebook_usage"]) == 2 and result["files"][0]["seconds"] == 1.0

    frames, _ = render_clip("red", "circle", "left", np.random.default_rng(0))
    write_video(tmp_path / "mute.mp4", frames, 8.0)
    with pytest.raises(UserError, match="audio"):
        encode_file(ckpt, tmp_path / "mute.mp4", tmp_path / "t.npz")
    bad = tone.copy()
    bad[100] = np.nan
    write_float_wav(tmp_path / "nan.wav", bad, 16000)
    with pytest.raises(UserError, match="NaN"):
        evaluate_files(ckpt, [tmp_path / "nan.wav"])
