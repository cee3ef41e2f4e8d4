"""The multi-scale STFT discriminator and the relative feature-matching loss."""

from __future__ import annotations

import pytest
import torch

from videopoet.tokenizers.audio.discriminator import (
    MultiScaleSTFTDiscriminator,
    STFTDiscriminatorConfig,
    feature_matching_loss,
)


def small() -> MultiScaleSTFTDiscriminator:
    torch.manual_seed(0)
    return MultiScaleSTFTDiscriminator(STFTDiscriminatorConfig(n_ffts=(256, 128), filters=4))


def test_one_logit_map_and_feature_list_per_scale() -> None:
    disc = small()
    logits, feats = disc(torch.randn(2, 1, 4000))
    assert len(logits) == len(feats) == 2
    assert all(lg.shape[0] == 2 for lg in logits) and all(len(f) > 1 for f in feats)
    logits_2d, _ = disc(torch.randn(2, 4000))  # [B, N] is taken as mono
    assert [lg.shape for lg in logits_2d] == [lg.shape for lg in logits]


def test_feature_matching_is_zero_for_equal_features_and_trains_only_the_fake_side() -> None:
    disc = small()
    wav = torch.randn(1, 1, 4000)
    _, real = disc(wav)
    assert feature_matching_loss(real, real).item() == pytest.approx(0.0)
    fake_wav = (wav + 0.1 * torch.randn_like(wav)).requires_grad_(True)
    real_wav = wav.clone().requires_grad_(True)
    _, real = disc(real_wav)
    _, fake = disc(fake_wav)
    loss = feature_matching_loss(real, fake)
    loss.backward()
    assert loss.item() > 0 and fake_wav.grad is not None and real_wav.grad is None  # real features are detached
    with pytest.raises(ValueError, match="scales"):
        feature_matching_loss(real, fake[:1])


def test_config_validation() -> None:
    for bad in ({"n_ffts": ()}, {"hop_ratio": 0.0}, {"filters": 0}, {"dilations": (0,)}):
        with pytest.raises(ValueError):
            STFTDiscriminatorConfig(**bad)
