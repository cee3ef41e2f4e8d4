"""Video tokenizer training: the loop on shapes with the GAN on (loadable folder, finite losses, resume,
NaN stop) and the entropy schedule. The generic loop is tested in tests/tokenizers/test_trainer.py and the
clip sources in tests/data/test_sources.py; these tests cover what is video-specific."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from videopoet.config import ConfigError, from_dict
from videopoet.data.sources import training_source
from videopoet.tokenizers.checkpoint import latest_checkpoint, load_tokenizer
from videopoet.tokenizers.registry import get_family
from videopoet.tokenizers.trainer import TrainingError, train_tokenizer
from videopoet.tokenizers.video.train import (
    VideoLossConfig,
    VideoSolver,
    VideoTokenizerTrainingConfig,
    block_means,
    item_balanced_mse,
)

FAMILY = get_family("video")


def fit(config: VideoTokenizerTrainingConfig, out: Path, resume: bool = False) -> dict[str, Any]:
    return FAMILY.train(config, training_source(FAMILY, "shapes", config), out, resume=resume)


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
    result = fit(small(steps=4), out)
    train, val = result["train"], result["val"]
    assert all(math.isfinite(v) for v in train.values())
    assert "d_loss" in train and "lecam" in train and train["adaptive_weight"] >= 0  # GAN on after step 2
    assert train["entropy_weight"] == pytest.approx(0.1 + (0.01 - 0.1) * 3 / 4)
    assert set(val) >= {"psnr", "ssim", "codebook_usage", "perplexity"} and 0 < val["codebook_usage"] <= 1
    config = json.loads((out / "config.json").read_text())
    assert config["kind"] == "video" and config["training"]["loss"]["disc_start"] == 2
    assert config["geometry"] == {"frames": 9, "height": 32, "width": 32, "fps": 8.0}  # what it takes, recorded
    model = load_tokenizer(out, "video")
    frames = torch.randint(0, 256, (9, 32, 32, 3), dtype=torch.uint8)
    assert model.encode_frames(frames).shape == (3, 4, 4)
    assert (out / "checkpoints" / "step_0000004" / "discriminator.safetensors").is_file()

    resumed = fit(small(steps=6), out, resume=True)
    assert resumed["step"] == 6 and latest_checkpoint(out).name == "step_0000006"
    with pytest.raises(TrainingError, match="already holds"):
        fit(small(steps=6), out)


def test_gan_off_and_nan_stops(tmp_path: Path) -> None:
    config = small(steps=2, gan_weight=0.0)
    solver = VideoSolver(config, training_source(FAMILY, "shapes", config))
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


def test_item_balanced_mse_gives_every_item_the_same_say(monkeypatch: pytest.MonkeyPatch) -> None:
    """Its value is the plain MSE, its gradient the mean log-MSE's scaled by the global batch's MSE: an
    item with a tenth of another's error pulls as hard as it, where the plain MSE lets the large error
    dominate; items are whole clips; `l2_balance: items` uses it and `pixels` does not."""
    scale = torch.tensor([0.1, 1.0]).view(2, 1, 1, 1, 1) / 10**0.5  # per-item MSE 0.001 and 0.1
    diff = scale * torch.ones(2, 3, 5, 4, 4)
    x = diff.clone().requires_grad_(True)
    value = item_balanced_mse(x)
    assert value.item() == pytest.approx(diff.pow(2).mean().item())
    value.backward()
    logged = diff.clone().requires_grad_(True)
    logged.pow(2).flatten(1).mean(1).log().mean().backward()
    assert torch.allclose(x.grad, diff.pow(2).mean() * logged.grad)
    pull = (x.grad * diff).flatten(1)[:, 0]  # gradient times error: the same for both items
    assert pull[1].item() == pytest.approx(pull[0].item())
    zero = torch.zeros(2, 3, 1, 4, 4, requires_grad=True)  # a perfect batch: floored, no NaN
    item_balanced_mse(zero).backward()
    assert item_balanced_mse(zero).item() == 0 and torch.isfinite(zero.grad).all()
    # under several ranks the weights are the global batch's mean over each item's own
    import videopoet.tokenizers.video.train as train_module

    monkeypatch.setattr(train_module, "mean_over_ranks", lambda t: t.detach() * 0 + 0.5)
    y = diff.clone().requires_grad_(True)
    item_balanced_mse(y).backward()
    assert torch.allclose(y.grad, 0.5 * logged.grad)
    monkeypatch.undo()
    with pytest.raises(ValueError, match="l2_balance"):
        VideoLossConfig(l2_balance="clips")  # type: ignore[arg-type]
    calls: list[int] = []

    def counted(d: torch.Tensor) -> torch.Tensor:
        calls.append(d.shape[0])
        return item_balanced_mse(d)

    monkeypatch.setattr(train_module, "item_balanced_mse", counted)
    for balance in ("pixels", "items"):
        config = small(l2_weight=1.0, l2_balance=balance, gan_weight=0.0)
        solver = FAMILY.build_solver(config, training_source(FAMILY, "shapes", config))
        batch = solver.sample_batch(np.random.default_rng(0))
        _, logs, recon = solver.generator_loss(batch, step=0)
        assert logs["l2"] == pytest.approx((recon.float() - batch.float()).pow(2).mean().item(), rel=1e-4)
    assert calls == [batch.shape[0]]  # only `items` went through it, with the whole batch


def test_lowpass_term_weighs_block_means_only() -> None:
    """The low-frequency term sees an error that is constant over blocks and not one that averages out
    within each block; it is off (and unlogged) at weight 0."""
    offset = torch.full((1, 3, 2, 16, 16), 0.5)
    checker = (torch.arange(16)[:, None] + torch.arange(16)[None, :]) % 2 * 2.0 - 1.0
    assert torch.allclose(block_means(offset, 8).pow(2).mean(), offset.pow(2).mean())
    assert block_means(checker.expand(1, 3, 2, 16, 16), 8).abs().max() == 0
    assert block_means(torch.ones(1, 1, 1, 10, 10), 8).shape[-2:] == (2, 2)  # an edge block holds what is left
    config = small(lowpass_weight=2.0, gan_weight=0.0)
    solver = FAMILY.build_solver(config, training_source(FAMILY, "shapes", config))
    batch = solver.sample_batch(np.random.default_rng(0))
    _, logs, recon = solver.generator_loss(batch, step=0)
    expected = block_means(recon.float() - batch.float(), 8).pow(2).mean().item()
    assert logs["lowpass"] == pytest.approx(expected, rel=1e-4)
    assert logs["rec"] == pytest.approx(logs["l1"] + 2.0 * expected, rel=1e-4)
    plain = small(gan_weight=0.0)
    _, logs, _ = FAMILY.build_solver(plain, training_source(FAMILY, "shapes", plain)).generator_loss(batch, step=0)
    assert "lowpass" not in logs and logs["rec"] == pytest.approx(logs["l1"])
    with pytest.raises(ConfigError, match="lowpass_factor"):
        from_dict(VideoTokenizerTrainingConfig, {"loss": {"lowpass_factor": 0}})


def test_photograph_batches_train_without_the_discriminator() -> None:
    """A 1-frame batch (joint image-video training) takes reconstruction and LFQ losses, no GAN term."""
    config = small(disc_start=0)
    solver = FAMILY.build_solver(config, training_source(FAMILY, "shapes", config))
    still = solver.sample_batch(np.random.default_rng(0))[:, :, :1]
    loss, logs, aux = solver.generator_loss(still, step=5)
    assert torch.isfinite(loss) and aux.shape == still.shape and "g_loss" not in logs
    assert solver.discriminator_loss(still, aux, step=5) is None
    clip = solver.sample_batch(np.random.default_rng(0))
    _, logs, aux = solver.generator_loss(clip, step=5)
    assert "g_loss" in logs and solver.discriminator_loss(clip, aux, step=5) is not None
