"""The 3D patch discriminator: patch logits for clips and still images, any aspect ratio, gradients."""

from __future__ import annotations

import pytest
import torch

from videopoet.tokenizers.adversarial import adaptive_weight, hinge_d_loss, hinge_g_loss
from videopoet.tokenizers.video.discriminator import DiscriminatorConfig, PatchDiscriminator
from videopoet.tokenizers.video.model import VideoTokenizer, VideoTokenizerConfig


@pytest.mark.parametrize("shape,logits", [((9, 64, 64), (3, 8, 8)), ((1, 64, 112), (1, 8, 14))])
def test_patch_logits_shape(shape: tuple[int, int, int], logits: tuple[int, int, int]) -> None:
    torch.manual_seed(0)
    disc = PatchDiscriminator(DiscriminatorConfig.preset("tiny", channels=8, norm_groups=4))
    out, features = disc(torch.rand(2, 3, *shape) * 2 - 1, return_features=True)
    assert out.shape == (2, 1, *logits)
    assert len(features) == 3


def test_gan_step_on_tokenizer() -> None:
    """One generator and one discriminator step: every discriminator parameter gets a gradient and the
    adaptive weight is measured at the tokenizer's last layer."""
    torch.manual_seed(0)
    model = VideoTokenizer(
        VideoTokenizerConfig(
            channels=8,
            channel_mult=(1, 1, 1, 1),
            num_res_blocks=1,
            norm_groups=4,
            bits=6,
            group_bits=3,
            frames=5,
            height=32,
            width=32,
        )
    )
    disc = PatchDiscriminator(DiscriminatorConfig(channels=8, norm_groups=4))
    x = torch.rand(1, 3, 5, 32, 32) * 2 - 1
    recon, _ = model(x)
    rec = (recon - x).abs().mean()
    gan = hinge_g_loss(disc(recon))
    weight = adaptive_weight(rec, gan, model.last_layer)
    assert weight.item() > 0
    (rec + 0.1 * weight * gan).backward()
    d = hinge_d_loss(disc(x), disc(recon.detach()))
    disc.zero_grad()
    d.backward()
    assert all(p.grad is not None for p in disc.parameters())


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="norm_groups"):
        DiscriminatorConfig(channels=10, norm_groups=4)
    with pytest.raises(ValueError, match="temporal_stages"):
        DiscriminatorConfig(temporal_stages=5)
    with pytest.raises(ValueError, match=r"\[B, 3, T, H, W\]"):
        PatchDiscriminator(DiscriminatorConfig(channels=8, norm_groups=4))(torch.zeros(3, 1, 8, 8))
