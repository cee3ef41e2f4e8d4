"""Audio tokenizer training: a few steps on shapes write a loadable folder, resume, the discriminator's
switch-on at disc_start, and the warm-ups (the audio sources: tests/data/test_sources.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from videopoet.config import from_dict, to_dict
from videopoet.data.sources import training_source
from videopoet.errors import UserError
from videopoet.tokenizers.audio.model import preset
from videopoet.tokenizers.audio.train import (
    AudioLossConfig,
    AudioSolver,
    AudioTokenizerTrainingConfig,
)
from videopoet.tokenizers.checkpoint import latest_checkpoint, load_tokenizer
from videopoet.tokenizers.registry import get_family

FAMILY = get_family("audio")


def fit(config: AudioTokenizerTrainingConfig, out: Path, resume: bool = False) -> dict:
    return FAMILY.train(config, training_source(FAMILY, "shapes", config), out, resume=resume)


def tiny_config(steps: int = 3, disc_start: int = 2, **loss) -> AudioTokenizerTrainingConfig:
    """The tiny preset with a small discriminator, short crops and a fast loop."""
    return from_dict(AudioTokenizerTrainingConfig, {
        "model": to_dict(preset("tiny")),
        "discriminator": {"n_ffts": [256, 128], "filters": 4},
        "loss": {"disc_start": disc_start, "mel_windows": [128, 256], **loss},
        "train": {"steps": steps, "batch_size": 2, "optim": {"lr": 1e-3, "warmup_steps": 1}, "precision": "fp32",
                  "num_workers": 0, "device": "cpu", "log_every": 1, "val_every": 100, "sample_every": 100,
                  "save_every": 2},
        "segment_seconds": 0.25, "val_clips": 2, "val_seconds": 0.5,
    })  # fmt: skip


def test_train_writes_loadable_folder_and_resumes(tmp_path: Path) -> None:
    out = tmp_path / "run"
    first = fit(tiny_config(steps=2), out)
    assert latest_checkpoint(out).name == "step_0000002"
    assert "d_loss" not in first["train"]  # steps 0 and 1 are before disc_start
    result = fit(tiny_config(steps=3), out, resume=True)
    assert latest_checkpoint(out).name == "step_0000003" and "d_loss" in result["train"]  # step 2: on
    assert np.isfinite(result["val"]["si_sdr"]) and 0 <= result["val"]["pitch_ok"] <= 1
    assert {"usage_l0", "usage_l1", "mel_distance"} <= set(result["val"])
    saved = json.loads((out / "config.json").read_text())
    assert saved["kind"] == "audio" and saved["training"]["loss"]["disc_start"] == 2
    assert saved["geometry"] == {"sample_rate": 16000, "frame_rate": 16000 / (4 * 4 * 4 * 5)}  # what it takes, recorded
    model = load_tokenizer(out, "audio")
    codes = model.encode(torch.zeros(1, 1, 4 * model.hop))
    assert codes.shape == (1, 2, 4)


def test_discriminator_switches_on_at_disc_start() -> None:
    config = tiny_config(disc_start=1)
    solver = AudioSolver(config, training_source(FAMILY, "shapes", config))
    batch = solver.sample_batch(np.random.default_rng(0))
    assert batch.shape == (2, 1, 4000) and batch.abs().max() <= 1
    loss, logs, recon = solver.generator_loss(batch, step=0)
    assert "g_adv" not in logs and solver.discriminator_loss(batch, recon, 0) is None
    loss, logs, recon = solver.generator_loss(batch, step=1)
    assert "g_adv" in logs and "feat_match" in logs and torch.isfinite(loss)
    d_loss, d_logs = solver.discriminator_loss(batch, recon, 1)
    d_loss.backward()
    assert any(p.grad is not None for p in solver.discriminator.parameters())


def test_quantizer_and_mel_warm_ups() -> None:
    config = tiny_config(disc_start=10, quantizer_start=2, mel_start=1, mel_log_eps=0.1)
    solver = AudioSolver(config, training_source(FAMILY, "shapes", config))
    assert solver.mel_loss.eps == 0.1
    batch = solver.sample_batch(np.random.default_rng(0))
    loss, logs, _ = solver.generator_loss(batch, step=0)  # plain autoencoder, waveform L1 alone
    assert "mel" not in logs and logs["commitment"] == 0 and torch.isfinite(loss)
    assert loss.item() == pytest.approx(logs["wave_l1"] * config.loss.waveform_l1_weight)
    assert not bool(solver.model.quantizer.initialized)
    metrics = solver.evaluate(solver.model)  # before the quantizer: the autoencoder is scored, no usage
    assert metrics["quantized"] == 0 and "usage_l0" not in metrics and np.isfinite(metrics["si_sdr"])
    solver.model.train()
    _, logs, _ = solver.generator_loss(batch, step=1)  # mel on, quantizer still off
    assert "mel" in logs and not bool(solver.model.quantizer.initialized)
    _, logs, _ = solver.generator_loss(batch, step=2)  # quantizer on: k-means on these latents
    assert bool(solver.model.quantizer.initialized) and "rvq/usage/level0" in logs
    metrics = solver.evaluate(solver.model)
    assert metrics["quantized"] == 1 and "usage_l1" in metrics
    short = AudioSolver(tiny_config(steps=3, quantizer_start=100), training_source(FAMILY, "shapes", config))
    assert [short.quantizer_on(s) for s in range(3)] == [False, False, True]  # the last step always quantizes


def test_quantizer_starts_from_k_means_on_more_batches_and_nmse_loss(monkeypatch: pytest.MonkeyPatch) -> None:
    """`quantizer_init_vectors` latent vectors (this batch's and extra batches') seed the RVQ, the same ones
    on every run; the normalized waveform MSE joins the loss with its weight."""
    config = tiny_config(disc_start=10, mel_start=5, quantizer_start=1, quantizer_init_vectors=100, waveform_nmse_weight=2.0)
    codebooks = []
    for _ in range(2):
        torch.manual_seed(0)
        solver = AudioSolver(config, training_source(FAMILY, "shapes", config))
        seen = []
        init = solver.model.quantizer.init_codebooks
        monkeypatch.setattr(solver.model.quantizer, "init_codebooks", lambda x, seen=seen, init=init: (seen.append(len(x)), init(x))[1])
        batch = solver.sample_batch(np.random.default_rng(0))  # 2 crops of 0.25 s: 10 latent vectors
        loss, logs, _ = solver.generator_loss(batch, step=0)
        assert loss.item() == pytest.approx(logs["wave_l1"] * config.loss.waveform_l1_weight + 2.0 * logs["wave_nmse"], rel=1e-5)
        solver.generator_loss(batch, step=1)
        assert seen == [100] and bool(solver.model.quantizer.initialized)
        codebooks.append(solver.model.quantizer.codebooks.clone())
    assert torch.equal(*codebooks)


def test_run_shorter_than_the_quantizer_warm_up_saves_initialised_codebooks(tmp_path: Path) -> None:
    fit(tiny_config(steps=2, disc_start=10, quantizer_start=50), tmp_path / "run")
    assert bool(load_tokenizer(tmp_path / "run", "audio").quantizer.initialized)


def test_loss_schedule_validation() -> None:
    with pytest.raises(ValueError, match="quantizer_start"):
        AudioLossConfig(quantizer_start=-1)
    with pytest.raises(ValueError, match="mel_start > 0 needs a waveform loss"):
        AudioLossConfig(mel_start=5, waveform_l1_weight=0.0)
    AudioLossConfig(mel_start=5, waveform_l1_weight=0.0, waveform_nmse_weight=1.0)  # either waveform loss will do
    with pytest.raises(ValueError, match="all 0"):
        AudioLossConfig(mel_weight=0.0, waveform_l1_weight=0.0)
    with pytest.raises(ValueError, match="quantizer_init_vectors"):
        AudioLossConfig(quantizer_init_vectors=-1)
    with pytest.raises(ValueError, match="mel_log_eps"):
        AudioLossConfig(mel_log_eps=0.0)
    with pytest.raises(UserError, match="quantizer_start must be >= 0"):  # from the config file: a clear error
        tiny_config(quantizer_start=-1)
