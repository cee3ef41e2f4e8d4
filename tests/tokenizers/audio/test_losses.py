"""Reconstruction and adversarial losses of the audio codec."""

import warnings

import pytest
import torch

from videopoet.tokenizers.audio.discriminator import (
    MultiScaleSTFTDiscriminator,
    STFTDiscriminatorConfig,
    feature_matching_loss,
)
from videopoet.tokenizers.audio.losses import MultiScaleMelLoss, mel_bins, waveform_l1, waveform_nmse


def tone(n: int = 4000, freq: float = 440.0) -> torch.Tensor:
    t = torch.arange(n) / 16000
    return (0.5 * torch.sin(2 * torch.pi * freq * t))[None, None]


def test_mel_loss_zero_for_identical_positive_otherwise():
    loss = MultiScaleMelLoss(16000)
    x = tone()
    assert loss(x, x.clone()).item() == 0.0
    assert loss(tone(freq=450.0), x).item() > 0.1
    assert loss(0.5 * x, x).item() > 0.1


@pytest.mark.parametrize("target", ["tone", "silence"])
def test_mel_loss_gradient_is_finite(target):
    loss = MultiScaleMelLoss(16000)
    y = tone() if target == "tone" else torch.zeros(1, 1, 4000)
    for x in (
        torch.zeros(1, 1, 4000, requires_grad=True),
        (0.1 * torch.randn(1, 1, 4000)).requires_grad_(True),
    ):
        value = loss(x, y)
        value.backward()
        assert torch.isfinite(value) and torch.isfinite(x.grad).all()


def test_mel_bins_leave_no_empty_filter():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torchaudio warns about all-zero mel filters
        for sr in (16000, 24000):
            MultiScaleMelLoss(sr)
    assert [mel_bins(2**i) for i in range(6, 12)] == [10, 20, 40, 80, 128, 128]


def test_losses_run_in_float32_under_bf16_autocast():
    loss = MultiScaleMelLoss(16000, windows=(64, 256))
    x = tone(2000)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        value = loss(x + 0.01, x)
    assert value.dtype == torch.float32 and torch.isfinite(value)


def test_waveform_l1():
    x = tone(100)
    assert waveform_l1(x, x).item() == 0
    assert waveform_l1(x + 0.25, x).item() == pytest.approx(0.25)
    with pytest.raises(ValueError, match="shape"):
        waveform_l1(x, x[..., :50])


def test_waveform_nmse_is_scale_free_and_one_for_silence():
    x = tone(400)
    assert waveform_nmse(x, x).item() == 0
    assert waveform_nmse(torch.zeros_like(x), x).item() == pytest.approx(1.0)
    assert waveform_nmse(torch.zeros_like(x), 0.01 * x).item() == pytest.approx(1.0)  # loudness does not matter
    assert waveform_nmse(0.5 * x, x).item() == pytest.approx(0.25, rel=1e-5)
    assert waveform_nmse(x, torch.zeros_like(x)).isfinite()  # a silent target does not divide by zero
    with pytest.raises(ValueError, match="shape"):
        waveform_nmse(x, x[..., :50])


def test_discriminator_shapes_and_feature_matching():
    torch.manual_seed(0)
    disc = MultiScaleSTFTDiscriminator(STFTDiscriminatorConfig(n_ffts=(256, 128, 64), filters=4))
    real = tone(2000)
    fake = (real + 0.1 * torch.randn_like(real)).requires_grad_(True)
    logits_real, feats_real = disc(real)
    logits_fake, feats_fake = disc(fake)
    assert len(logits_real) == len(feats_real) == 3
    assert all(lg.shape[:2] == (1, 1) for lg in logits_real)
    assert all(len(f) == 5 for f in feats_real)  # first conv, three dilated, last 3x3
    assert feature_matching_loss(feats_real, feats_real).item() == 0
    fm = feature_matching_loss(feats_real, feats_fake)
    assert fm.item() > 0
    fm.backward()
    assert torch.isfinite(fake.grad).all() and fake.grad.abs().sum() > 0


def test_feature_matching_does_not_train_through_real():
    real = [[torch.randn(2, 3, requires_grad=True)]]
    fake = [[torch.randn(2, 3, requires_grad=True)]]
    feature_matching_loss(real, fake).backward()
    assert real[0][0].grad is None and fake[0][0].grad is not None
    with pytest.raises(ValueError):
        feature_matching_loss(real, [])
