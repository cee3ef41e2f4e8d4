"""GAN losses the media tokenizers share: functions over discriminator logits and features, nothing
modality-specific, so the video and audio tokenizers use the same code.

- hinge and non-saturating losses for the discriminator and the generator;
- LeCam regularisation (Tseng et al. 2021) with EMAs of the real and fake logits, as MAGVIT-v2 uses;
- the VQGAN adaptive weight: ||grad of the reconstruction loss|| / ||grad of the GAN loss|| at the
  decoder's last layer, so the adversarial term neither swamps nor vanishes beside reconstruction;
- feature matching (L1 between discriminator features of real and fake), as SoundStream/MelGAN use.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


def hinge_d_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """Discriminator hinge loss: mean(relu(1 - real)) + mean(relu(1 + fake))."""
    return F.relu(1 - real_logits).mean() + F.relu(1 + fake_logits).mean()


def hinge_g_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """Generator hinge loss: -mean(fake)."""
    return -fake_logits.mean()


def non_saturating_d_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """Discriminator logistic loss: mean(softplus(-real)) + mean(softplus(fake))."""
    return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()


def non_saturating_g_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """Generator non-saturating loss: mean(softplus(-fake)) = -mean(log sigmoid(fake))."""
    return F.softplus(-fake_logits).mean()


def d_loss(kind: str, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """The discriminator loss named `kind`: 'hinge' or 'non_saturating'."""
    if kind == "hinge":
        return hinge_d_loss(real_logits, fake_logits)
    if kind == "non_saturating":
        return non_saturating_d_loss(real_logits, fake_logits)
    raise ValueError(f"unknown GAN loss {kind!r}; use 'hinge' or 'non_saturating'")


def g_loss(kind: str, fake_logits: torch.Tensor) -> torch.Tensor:
    """The generator loss named `kind`: 'hinge' or 'non_saturating'."""
    if kind == "hinge":
        return hinge_g_loss(fake_logits)
    if kind == "non_saturating":
        return non_saturating_g_loss(fake_logits)
    raise ValueError(f"unknown GAN loss {kind!r}; use 'hinge' or 'non_saturating'")


def lecam_regularizer(
    real_logits: torch.Tensor,
    fake_logits: torch.Tensor,
    ema_real: torch.Tensor | float,
    ema_fake: torch.Tensor | float,
) -> torch.Tensor:
    """LeCam regulariser: mean(relu(real - ema_fake)^2) + mean(relu(ema_real - fake)^2).

    Keeps the discriminator's predictions on real data near the running mean of its fake predictions and
    vice versa, which bounds how far apart they drift when data are scarce (the official code's form)."""
    return F.relu(real_logits - ema_fake).pow(2).mean() + F.relu(ema_real - fake_logits).pow(2).mean()


class LeCamEMA(nn.Module):
    """Running means of real and fake logits for `lecam_regularizer`; buffers, so checkpoints keep them."""

    def __init__(self, decay: float = 0.999) -> None:
        super().__init__()
        if not 0 <= decay < 1:
            raise ValueError(f"LeCam EMA decay must be in [0, 1), got {decay}")
        self.decay = decay
        self.register_buffer("real", torch.zeros(()))
        self.register_buffer("fake", torch.zeros(()))
        self.register_buffer("initialized", torch.zeros((), dtype=torch.bool))

    @torch.no_grad()
    def update(self, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> None:
        real, fake = real_logits.float().mean(), fake_logits.float().mean()
        if not bool(self.initialized):
            self.real.copy_(real)
            self.fake.copy_(fake)
            self.initialized.fill_(True)
        else:
            self.real.lerp_(real, 1 - self.decay)
            self.fake.lerp_(fake, 1 - self.decay)

    def forward(self, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
        """Update the EMAs with this batch, then return the regulariser against them."""
        self.update(real_logits, fake_logits)
        return lecam_regularizer(real_logits, fake_logits, self.real, self.fake)


def adaptive_weight(
    rec_loss: torch.Tensor,
    gan_loss: torch.Tensor,
    last_layer: torch.Tensor,
    max_weight: float = 1e4,
    eps: float = 1e-4,
) -> torch.Tensor:
    """The VQGAN adaptive weight of the generator's GAN loss: ||d rec / d w|| / (||d gan / d w|| + eps)
    at `last_layer` (the decoder's last weight), clamped to [0, max_weight], detached.

    Both losses must still have their graphs; the graphs are kept for the backward pass that follows.
    Outside a graph (e.g. evaluation) the weight is 0."""
    if not (rec_loss.requires_grad and gan_loss.requires_grad):
        return torch.zeros((), device=rec_loss.device)
    rec_grad = torch.autograd.grad(rec_loss, last_layer, retain_graph=True)[0]
    gan_grad = torch.autograd.grad(gan_loss, last_layer, retain_graph=True)[0]
    weight = rec_grad.float().norm() / (gan_grad.float().norm() + eps)
    return weight.clamp(0.0, max_weight).detach()


def feature_matching_loss(
    real_features: Sequence[torch.Tensor], fake_features: Sequence[torch.Tensor]
) -> torch.Tensor:
    """Mean over layers of L1 between discriminator features of real (detached) and fake inputs."""
    if len(real_features) != len(fake_features) or not real_features:
        raise ValueError("feature matching needs the same, non-zero number of real and fake feature maps")
    losses = [F.l1_loss(fake, real.detach()) for real, fake in zip(real_features, fake_features)]
    return torch.stack(losses).mean()
