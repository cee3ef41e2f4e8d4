"""Training of the video tokenizer: config section `video_tokenizer`, clip sources, and the solver that
plugs into the shared loop (`videopoet.tokenizers.trainer.train_tokenizer`).

Losses (MAGVIT-v2 recipe, each weight configurable in `VideoLossConfig`):
- reconstruction: L1 and/or L2 between the clip and its (unclamped) reconstruction, and optionally an L2
  between the two averaged over `lowpass_factor` x `lowpass_factor` blocks of each frame (`lowpass_weight`):
  that is the block-mean part of the plain L2, so its weight adds to what slow colour and shading errors
  cost (a near-white sky coming back with pink and green blotches a few blocks wide) against texture; no
  config sets it: at weight 10 the real-video recipe learned slower (docs/results.md, "Real video").
  `l2_balance: items` weighs each clip's (or photograph's) squared error by the global batch's mean over
  its own, so the L2 term's gradient is that of the items' mean PSNR (per-item log MSE) at the plain L2's
  size: a flat clip with a tenth of a textured one's error counts as much, where plain L2 lets texture
  dominate (it also changes the L2's share of the GAN's adaptive weight);
- LFQ: commitment, plus the entropy loss whose weight decays linearly from `entropy_weight` to
  `entropy_weight_final` over `entropy_anneal_steps` (strong at first so the codebook spreads out, weaker
  later so it stops fighting reconstruction). These weights replace the model config's LFQ weights;
- adversarial, from step `disc_start`: the patch discriminator's generator loss times `gan_weight` times
  the VQGAN adaptive weight; the discriminator trains with hinge (or non-saturating) loss plus LeCam.
Batches of photographs (1-frame videos, MAGVIT-v2's joint image-video training) take every loss but
the adversarial one: the 3D patch discriminator judges motion as well as texture, and a still has none.
No perceptual (LPIPS/I3D) loss: it needs pretrained networks, which this project does not download.

Data comes from a `TrainingSource` of video clips (`videopoet.data.sources`): the solver does not know
whether they are rendered shapes, media files or a clip index.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from videopoet.distributed import mean_over_ranks
from videopoet.metrics.video import psnr, ssim
from videopoet.tokenizers.adversarial import LeCamEMA, adaptive_weight, d_loss, g_loss
from videopoet.tokenizers.trainer import FamilyTrainingConfig, SolverBase, TrainingSource, train_tokenizer
from videopoet.tokenizers.video.discriminator import DiscriminatorConfig, PatchDiscriminator
from videopoet.tokenizers.video.lfq import CodebookUsage
from videopoet.tokenizers.video.model import VideoTokenizer, VideoTokenizerConfig


def item_balanced_mse(diff: torch.Tensor, floor: float = 1e-5) -> torch.Tensor:
    """Mean squared error of `diff` (B, ...) with each item's error weighted by the global batch's mean
    (over every rank) over its own, detached, each item's floored at `floor` (56 dB on [-1, 1]): the value
    is the plain mean squared error (when no item is below the floor), the gradient, averaged over the
    ranks, is the mean one's times the gradient of the items' mean log error, so every item's PSNR counts
    the same on any number of ranks (with one item per rank too)."""
    per_item = diff.pow(2).flatten(1).mean(1)
    weights = (mean_over_ranks(per_item.mean()) / per_item.clamp_min(floor)).detach()
    return (weights * per_item).mean()


def block_means(video: torch.Tensor, factor: int) -> torch.Tensor:
    """Each frame of (B, C, T, H, W) `video` averaged over `factor` x `factor` blocks (edge blocks over
    what they hold)."""
    return nn.functional.avg_pool3d(video, (1, factor, factor), ceil_mode=True)


@dataclass
class VideoLossConfig:
    """Weights of the video tokenizer's training losses (see the module docstring)."""

    l1_weight: float = 1.0
    l2_weight: float = 0.0
    l2_balance: Literal["pixels", "items"] = "pixels"  # items: each item's L2 by its log (mean PSNR)
    lowpass_weight: float = 0.0  # L2 of the block means of each frame; 0 turns it off
    lowpass_factor: int = 8  # block side (pixels) of that term
    commitment_weight: float = 0.25
    entropy_weight: float = 0.1  # at step 0
    entropy_weight_final: float = 0.01  # after `entropy_anneal_steps`
    entropy_anneal_steps: int = 2000  # 0: constant `entropy_weight`
    gan_weight: float = 0.1  # 0 turns the adversarial loss and the discriminator off
    disc_start: int = 2000  # step at which the adversarial loss switches on
    disc_loss: Literal["hinge", "non_saturating"] = "hinge"
    lecam_weight: float = 0.001
    lecam_decay: float = 0.999
    adaptive_weight: bool = True  # VQGAN adaptive weight of the generator's GAN loss
    max_adaptive_weight: float = 1e4

    def __post_init__(self) -> None:
        weights = ("l1_weight", "l2_weight", "lowpass_weight", "commitment_weight", "entropy_weight",
                   "entropy_weight_final", "gan_weight", "lecam_weight")  # fmt: skip
        bad = [w for w in weights if getattr(self, w) < 0]
        if bad:
            raise ValueError(f"loss weights must be non-negative: {', '.join(bad)}")
        if self.l1_weight == 0 and self.l2_weight == 0:
            raise ValueError("l1_weight and l2_weight are both 0: nothing would teach reconstruction")
        if self.l2_balance not in ("pixels", "items"):
            raise ValueError(f"l2_balance must be 'pixels' or 'items', got {self.l2_balance!r}")
        if self.lowpass_factor < 1:
            raise ValueError(f"lowpass_factor must be >= 1, got {self.lowpass_factor}")
        if self.entropy_anneal_steps < 0 or self.disc_start < 0:
            raise ValueError("entropy_anneal_steps and disc_start must be >= 0")
        if not 0 <= self.lecam_decay < 1:
            raise ValueError(f"lecam_decay must be in [0, 1), got {self.lecam_decay}")

    def entropy_weight_at(self, step: int) -> float:
        """Entropy loss weight at `step`: linear from `entropy_weight` to `entropy_weight_final`."""
        if self.entropy_anneal_steps == 0:
            return self.entropy_weight
        frac = min(1.0, step / self.entropy_anneal_steps)
        return self.entropy_weight + (self.entropy_weight_final - self.entropy_weight) * frac


@dataclass
class VideoTokenizerTrainingConfig(FamilyTrainingConfig):
    """Project config section `video_tokenizer`: model, discriminator, losses (and the loop, validation)."""

    model: VideoTokenizerConfig = field(default_factory=VideoTokenizerConfig)
    discriminator: DiscriminatorConfig = field(default_factory=DiscriminatorConfig)
    loss: VideoLossConfig = field(default_factory=VideoLossConfig)
    fps: float = 8.0  # frame rate clips are read at from media folders (clip indexes keep their own)

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.fps > 0:
            raise ValueError(f"fps must be > 0, got {self.fps}")


# ---- solver -----------------------------------------------------------------------------------------------


class Critic(nn.Module):
    """The patch discriminator with its LeCam EMAs, so checkpoints keep both."""

    def __init__(self, config: DiscriminatorConfig, lecam_decay: float) -> None:
        super().__init__()
        self.net = PatchDiscriminator(config)
        self.lecam = LeCamEMA(lecam_decay)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).float()


class VideoSolver(SolverBase):
    """The video tokenizer's side of the shared training loop (`TokenizerSolver`)."""

    family = "video"

    def __init__(self, config: VideoTokenizerTrainingConfig, source: TrainingSource) -> None:
        super().__init__(config, source)
        self.model = VideoTokenizer(config.model)
        self.discriminator: Critic | None = (
            Critic(config.discriminator, config.loss.lecam_decay) if config.loss.gan_weight > 0 else None
        )

    def generator_loss(self, batch: torch.Tensor, step: int) -> tuple[torch.Tensor, dict[str, float], Any]:
        cfg = self.config.loss
        recon, quant = self.model(batch)
        diff = recon.float() - batch.float()
        l1 = diff.abs().mean()
        l2 = item_balanced_mse(diff) if cfg.l2_balance == "items" else diff.pow(2).mean()
        rec = cfg.l1_weight * l1 + cfg.l2_weight * l2
        if cfg.lowpass_weight > 0:
            lowpass = block_means(diff, cfg.lowpass_factor).pow(2).mean()
            rec = rec + cfg.lowpass_weight * lowpass
        ent_w = cfg.entropy_weight_at(step)
        loss = rec + cfg.commitment_weight * quant.commitment + ent_w * quant.entropy
        logs = {
            "rec": rec.item(),
            "l1": l1.item(),
            "l2": l2.item(),
            **({"lowpass": lowpass.item()} if cfg.lowpass_weight > 0 else {}),
            "commitment": quant.commitment.item(),
            "entropy": quant.entropy.item(),
            "per_token_entropy": quant.per_token_entropy.item(),
            "codebook_entropy": quant.codebook_entropy.item(),
            "entropy_weight": ent_w,
            "used_codes": float(quant.used_codes),
            "perplexity": quant.perplexity,
        }
        if self.gan_on(step) and batch.shape[2] > 1:
            assert self.discriminator is not None
            self.discriminator.requires_grad_(False)  # the generator step must not touch its weights
            try:
                gan = g_loss(cfg.disc_loss, self.discriminator(recon))
            finally:
                self.discriminator.requires_grad_(True)
            weight = (
                adaptive_weight(rec, gan, self.model.last_layer, cfg.max_adaptive_weight)
                if cfg.adaptive_weight
                else torch.ones((), device=rec.device)
            )
            loss = loss + cfg.gan_weight * weight * gan
            logs.update({"g_loss": gan.item(), "adaptive_weight": float(weight)})
        logs["loss"] = loss.item()
        return loss, logs, recon.detach()

    def discriminator_loss(
        self, batch: torch.Tensor, aux: Any, step: int
    ) -> tuple[torch.Tensor, dict[str, float]] | None:
        if not self.gan_on(step) or batch.shape[2] == 1:
            return None
        assert self.discriminator is not None
        cfg = self.config.loss
        real, fake = self.discriminator(batch), self.discriminator(aux.to(batch.dtype))
        main = d_loss(cfg.disc_loss, real, fake)
        lecam = self.discriminator.lecam(real, fake)
        loss = main + cfg.lecam_weight * lecam
        return loss, {
            "d_loss": main.item(),
            "lecam": lecam.item(),
            "logits_real": real.mean().item(),
            "logits_fake": fake.mean().item(),
        }

    @torch.no_grad()
    def evaluate(self, model: nn.Module) -> dict[str, float]:
        """PSNR, SSIM (mean over clips), L1, codebook usage and perplexity on the validation clips."""
        model.eval()
        clips = self.validation_clips()
        usage = CodebookUsage(self.config.model.codebook_size)
        scores: dict[str, list[float]] = {"psnr": [], "ssim": [], "l1": []}
        bs = self.config.train.batch_size
        for i in range(0, clips.shape[0], bs):
            x = clips[i : i + bs].to(model.device)
            recon, quant = model(x)
            recon = recon.float().clamp(-1, 1)
            usage.update(quant.ids)
            for a, b in zip(x, recon):
                scores["psnr"].append(psnr(a, b))
                scores["ssim"].append(ssim(a, b))
                scores["l1"].append(float((a - b).abs().mean()))
        stats = usage.result()
        out = {k: float(np.mean(v)) for k, v in scores.items()}
        out.update(
            {"codebook_usage": stats["usage"], "perplexity": stats["perplexity"], "used_codes": stats["used"]}
        )
        return out

    @torch.no_grad()
    def write_samples(
        self, writer: Any, model: nn.Module, step: int, max_clips: int = 4, max_frames: int = 8
    ) -> None:
        """One image per validation clip: up to `max_frames` frames side by side, original above
        reconstruction."""
        model.eval()
        x = self.validation_clips()[:max_clips].to(model.device)
        recon = model(x)[0].float().clamp(-1, 1)
        t = x.shape[2]
        idx = torch.linspace(0, t - 1, min(t, max_frames)).round().long().unique()

        def strip(v: torch.Tensor) -> torch.Tensor:  # [N, 3, T, H, W] -> [N, 3, H, len(idx) * W]
            v = v[:, :, idx]
            return torch.cat(list(v.unbind(2)), dim=-1)

        grid = torch.cat([strip(x.float()), strip(recon)], dim=2)
        writer.add_images(
            "samples/original_over_reconstruction", ((grid + 1) / 2).cpu(), step, dataformats="NCHW"
        )


def source_spec(config: VideoTokenizerTrainingConfig) -> dict[str, Any]:
    """The clips a video source must give this config: frame count, size (H, W) and frame rate."""
    m = config.model
    return {"frames": m.frames, "size": (m.height, m.width), "fps": config.fps}


def train_video_tokenizer(
    config: VideoTokenizerTrainingConfig, source: TrainingSource, out: str | Path, resume: bool = False
) -> dict[str, Any]:
    """Train the video tokenizer on clips from `source` into `out` (a tokenizer folder
    `load_tokenizer(out, "video")` reads); returns the last losses and validation metrics."""
    return train_tokenizer(VideoSolver(config, source), config.train, out, resume=resume)
