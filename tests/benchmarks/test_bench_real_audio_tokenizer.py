"""benchmarks/bench_real_audio_tokenizer.py: its config handling, tables and images, and one end-to-end run
(2 training steps of the `tiny` preset) on a made-up corpus with a broken file."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pytest

from videopoet.media import write_audio
from videopoet.tokenizers.checkpoint import load_tokenizer

ROOT = Path(__file__).resolve().parents[2]
SR = 16000


def _load_bench():
    spec = importlib.util.spec_from_file_location("bench_real_audio_tokenizer", ROOT / "benchmarks" / "bench_real_audio_tokenizer.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


bench = _load_bench()


def test_config_preset_and_overrides() -> None:
    cfg = bench.load_config(bench.DEFAULT_CONFIG)
    assert cfg.model.bitrate_kbps() <= 2.0  # the CPU config keeps VideoPoet's bit budget
    vp = bench.load_config(bench.DEFAULT_CONFIG, "videopoet", ["model.causal=false", "train.batch_size=3"])
    assert (vp.model.levels, vp.model.codebook_size, vp.model.frame_rate, vp.model.channels) == (4, 1024, 50.0, 32)
    assert vp.model.causal is False and vp.train.batch_size == 3
    assert vp.loss == cfg.loss  # only the model is the preset's ...
    assert cfg.model.init == vp.model.init == "fan_in"  # ... and the recipe's init stays (the preset's own is torch's)
    assert bench.load_config(bench.DEFAULT_CONFIG, "videopoet", ["model.init=torch"]).model.init == "torch"
    cfg.loss.quantizer_start, cfg.loss.mel_start, cfg.train.steps = 300, 5, 100
    assert bench.cap_warmups(cfg, ["loss.quantizer_start=300"]) == {} and cfg.loss.quantizer_start == 300  # the user's wins
    assert bench.cap_warmups(cfg) == {"loss.quantizer_start": 50} and (cfg.loss.quantizer_start, cfg.loss.mel_start) == (50, 5)


def test_spectrogram_image_and_colormap() -> None:
    c = bench.colorize(np.array([0.0, 1.0, 2.0, np.nan]))
    assert c.dtype == np.uint8 and c.shape == (4, 3) and c[0].sum() < c[1].sum() and (c[2] == c[1]).all()
    t = np.arange(SR) / SR
    tone = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    img = bench.spectrogram_image([tone, tone[: SR // 2], np.zeros(SR, np.float32)], SR, mels=40)
    assert img.dtype == np.uint8 and img.shape[0] == 3 * 80 + 2 * 2 and img.shape[2] == 3
    assert img[80:82].min() == 255  # white line between panels
    assert img[:80].mean() > img[-80:].mean()  # the tone is brighter than silence
    wide = bench.spectrogram_image([np.zeros(100 * SR, np.float32)], SR, max_width=500)
    assert wide.shape[1] <= 501


def test_group_means_and_targets() -> None:
    rows = [{"group": "speech", "file": "a", "seconds": 1.0, "si_sdr": 2.0, "mel": 0.5, "loudness": -1.0, "opus6_mel": 0.6},
            {"group": "speech", "file": "b", "seconds": 2.0, "si_sdr": 4.0, "mel": 0.7, "loudness": math.nan, "opus6_mel": 0.6}]  # fmt: skip
    m = bench.group_means(rows)
    assert m == {"files": 2, "seconds": 3.0, "si_sdr": 3.0, "mel": 0.6, "loudness": -1.0, "loudness_abs": 1.0,
                 "opus6_mel": 0.6}  # fmt: skip
    assert bench.targets({"speech": m}, 2.0) == {"mel_at_or_below_opus6": True, "kbps_at_most_2": True, "si_sdr_above_0": True}
    assert bench.targets({"speech": {**m, "si_sdr": -1.0}}, 3.0)["kbps_at_most_2"] is False
    assert bench.targets({}, 2.0)["si_sdr_above_0"] is None


def test_end_to_end_on_a_tiny_corpus(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    corpus = tmp_path / "corpus"
    rng = np.random.default_rng(0)
    t = np.arange(int(1.5 * SR)) / SR
    names = []
    for group, hz in (("speech", 220), ("speech", 330), ("music", 440), ("music", 550)):
        name = f"audio/{group}/{hz}.flac"
        wav = 0.3 * np.sin(2 * np.pi * hz * t) + 0.01 * rng.standard_normal(t.size)
        write_audio(corpus / name, wav.astype(np.float32), 22050 if group == "music" else SR)
        names.append(name)
    (corpus / "audio/music/broken.flac").write_bytes(b"not audio at all")
    splits = {"train": [names[0], names[2]], "val": [names[1], names[3], "audio/music/broken.flac"]}
    (corpus / "splits.json").write_text(json.dumps(splits))
    out, js = tmp_path / "tok", tmp_path / "r.json"
    result = bench.main(["--corpus", str(corpus), "--steps", "2", "--preset", "tiny", "--out", str(out), "--json", str(js),
                         "--seconds", "1", "segment_seconds=0.5", "val_seconds=0.5", "val_clips=1", "train.batch_size=2",
                         "train.num_workers=0"])  # fmt: skip
    err = capsys.readouterr()
    assert "skipping" in err.err and "broken.flac" in err.err
    saved = json.loads(js.read_text())
    assert [r["group"] for r in saved["files"]] == ["speech", "music"] and saved["steps"] == saved["planned_steps"] == 2
    row = saved["files"][0]
    assert row["seconds"] == pytest.approx(1.0) and row["kbps"] == pytest.approx(0.8)
    for key in ("si_sdr", "mel", "loudness", "opus6_si_sdr", "opus6_mel", "opus12_mel", "encode_rtf", "decode_rtf"):
        assert math.isfinite(row[key]), key
    assert row["si_sdr"] < 0 < row["opus6_si_sdr"]  # an untrained codec is far worse than Opus
    assert (out / "spectrograms" / row["spectrogram"]).is_file()
    assert set(saved["groups"]) == {"speech", "music"} and len(saved["codebook_usage"]) == 2
    assert saved["targets"]["si_sdr_above_0"] is False and saved["training"]["train"]["steps"] == 2
    assert saved["plan"]["warmups_cut"] == {"loss.quantizer_start": 1, "loss.mel_start": 1}  # the config's 1000 and 200 on a 2-step run
    assert "targets on val speech" in err.out and result["out"] == str(out)
    assert load_tokenizer(out, "audio").config.levels == 2
