"""Video tokenizer training: the loop on shapes with the GAN on (loadable folder, finite losses, resume,
NaN stop), the entropy schedule, and the three clip sources. The generic loop is tested in
tests/tokenizers/test_trainer.py; these tests cover what is video-specific."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from videopoet.config import ConfigError, from_dict
from videopoet.data.synthetic import ShapesConfig
from videopoet.errors import UserError
from videopoet.tokenizers.checkpoint import latest_checkpoint, load_tokenizer
from videopoet.tokenizers.trainer import TrainingError, train_tokenizer
from videopoet.tokenizers.video.train import (
    VideoLossConfig,
    VideoSolver,
    VideoTokenizerTrainingConfig,
    make_clip_source,
    train_video_tokenizer,
)


def small(steps: int = 4, **loss: Any) -> VideoTokenizerTrainingConfig:
    """The tiny preset made smaller still (8 channels, 6 bits, 9x32x32 clips) so steps take ~0.1 s."""
    return from_dict(
        VideoTokenizerTrainingConfig,
        {
            "model": dict(channels=8, channel_mult=[1, 2, 2, 2], num_res_blocks=1, norm_groups=4, bits=6,
                          group_bits=3, frames=9, height=32, width=32),
            "discriminator": dict(channels=8, channel_mult=[1, 2], temporal_stages=1, norm_groups=4),
            "loss": {"disc_start": 2, "entropy_anneal_steps": 4, **loss},
            "train": dict(steps=steps, batch_size=2, precision="fp32", log_every=2, val_every=2, sample_every=4,
                          save_every=2, num_workers=0, device="cpu", optim=dict(lr=1e-3, warmup_steps=1)),
            "val_clips": 2,
        },
    )  # fmt: skip


def test_trains_on_shapes_with_gan_and_resumes(tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = train_video_tokenizer(small(steps=4), "shapes", out)
    train, val = result["train"], result["val"]
    assert all(math.isfinite(v) for v in train.values())
    assert "d_loss" in train and "lecam" in train and train["adaptive_weight"] >= 0  # GAN on after step 2
    assert train["entropy_weight"] == pytest.approx(0.1 + (0.01 - 0.1) * 3 / 4)
    assert set(val) >= {"psnr", "ssim", "codebook_usage", "perplexity"} and 0 < val["codebook_usage"] <= 1
    config = json.loads((out / "config.json").read_text())
    assert config["kind"] == "video" and config["training"]["loss"]["disc_start"] == 2
    model = load_tokenizer(out, "video")
    frames = torch.randint(0, 256, (9, 32, 32, 3), dtype=torch.uint8)
    assert model.encode_frames(frames).shape == (3, 4, 4)
    assert (out / "checkpoints" / "step_0000004" / "discriminator.safetensors").is_file()

    resumed = train_video_tokenizer(small(steps=6), "shapes", out, resume=True)
    assert resumed["step"] == 6 and latest_checkpoint(out).name == "step_0000006"
    with pytest.raises(TrainingError, match="already holds"):
        train_video_tokenizer(small(steps=6), "shapes", out)


def test_gan_off_and_nan_stops(tmp_path: Path) -> None:
    config = small(steps=2, gan_weight=0.0)
    solver = VideoSolver(config, make_clip_source("shapes", config))
    assert solver.discriminator is None
    batch = solver.sample_batch(np.random.default_rng(0))
    assert solver.discriminator_loss(batch, batch, 10) is None
    solver.source.sample = lambda rng, n: torch.full((n, 3, 9, 32, 32), float("nan"))  # type: ignore[method-assign]
    with pytest.raises(TrainingError, match="at step 0"):
        train_tokenizer(solver, config.train, tmp_path)


def test_loss_config() -> None:
    loss = VideoLossConfig(entropy_weight=1.0, entropy_weight_final=0.0, entropy_anneal_steps=10)
    assert [loss.entropy_weight_at(s) for s in (0, 5, 10, 50)] == [1.0, 0.5, 0.0, 0.0]
    assert VideoLossConfig(entropy_anneal_steps=0).entropy_weight_at(99) == 0.1
    with pytest.raises(ConfigError, match="nothing would teach"):
        from_dict(VideoTokenizerTrainingConfig, {"loss": {"l1_weight": 0.0}})
    with pytest.raises(ConfigError, match="unknown config key 'loss.gan_wieght'"):
        from_dict(VideoTokenizerTrainingConfig, {"loss": {"gan_wieght": 0.0}})


def test_shapes_source_is_deterministic_and_fits_any_aspect() -> None:
    config = small()
    config.model.height, config.model.width = 32, 48
    source = make_clip_source("shapes", config)
    a, b = source.sample(np.random.default_rng(3), 2), source.sample(np.random.default_rng(3), 2)
    assert a.shape == (2, 3, 9, 32, 48) and torch.equal(a, b) and a.min() >= -1 and a.max() <= 1
    assert torch.equal(source.validation(3), source.validation(3))


def test_shapes_source_draws_clips_as_the_shapes_config_says() -> None:
    config = small()
    look = ShapesConfig(size=64, frames=3, fps=2.0, background_levels=(30, 30), shape_width=0.4)
    source = make_clip_source("shapes", config, look)
    assert source.shapes.size == 32 and source.shapes.frames == 9 and source.shapes.fps == config.fps  # the tokenizer's
    clips = source.sample(np.random.default_rng(0), 4)
    corner = ((clips[:, :, :, 0, 0] + 1) * 127.5).round()
    assert (corner == 30).all()  # the one background level asked for
    default = make_clip_source("shapes", config).sample(np.random.default_rng(0), 4)
    assert not torch.equal(clips, default)


def test_media_folder_and_clip_index_sources(tmp_path: Path) -> None:
    from videopoet.data.ingest import IngestConfig, ingest
    from videopoet.data.io import write_video
    from videopoet.data.synthetic import ShapesConfig, render_frames

    config = small()
    media = tmp_path / "media"
    media.mkdir()
    rng = np.random.default_rng(0)
    write_video(media / "long.mp4", render_frames("red", "circle", "left", rng, ShapesConfig(frames=24)), 8.0)
    write_video(media / "short.mp4", render_frames("blue", "square", "up", rng, ShapesConfig(frames=4)), 8.0)
    (media / "notes.txt").write_text("not media")
    source = make_clip_source(media, config)
    assert [Path(s.path).name for s in source.train] == ["long.mp4"]  # 0.5 s is too short for 9 frames
    assert source.sample(np.random.default_rng(0), 2).shape == (2, 3, 9, 32, 32)
    assert torch.equal(source.validation(2), source.validation(2))

    ingest(media, tmp_path / "index", IngestConfig(frames=9), progress=False)
    indexed = make_clip_source(tmp_path / "index", config)
    assert indexed.sample(np.random.default_rng(0), 1).shape == (1, 3, 9, 32, 32)

    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(UserError, match="no usable video"):
        make_clip_source(empty, config)
    with pytest.raises(UserError, match="not found"):
        make_clip_source(tmp_path / "missing", config)
