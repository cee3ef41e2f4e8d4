"""The shared GAN losses on known inputs: values and gradients."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from videopoet.tokenizers.adversarial import (
    LeCamEMA,
    adaptive_weight,
    d_loss,
    feature_matching_loss,
    g_loss,
    hinge_d_loss,
    hinge_g_loss,
    lecam_regularizer,
    non_saturating_d_loss,
    non_saturating_g_loss,
)


def test_hinge_losses_values_and_gradients() -> None:
    real = torch.tensor([2.0, 0.5], requires_grad=True)
    fake = torch.tensor([-2.0, 0.0], requires_grad=True)
    loss = hinge_d_loss(real, fake)
    assert loss.item() == pytest.approx((0 + 0.5) / 2 + (0 + 1) / 2)
    loss.backward()
    assert real.grad.tolist() == [0.0, -0.5]  # only margin violators get gradient
    assert fake.grad.tolist() == [0.0, 0.5]

    fake = torch.tensor([1.0, -3.0], requires_grad=True)
    gen = hinge_g_loss(fake)
    assert gen.item() == pytest.approx(1.0)
    gen.backward()
    assert fake.grad.tolist() == [-0.5, -0.5]


def test_non_saturating_losses() -> None:
    real = torch.tensor([1.0, -1.0], requires_grad=True)
    fake = torch.tensor([0.0, 2.0], requires_grad=True)
    loss = non_saturating_d_loss(real, fake)
    expected = (math.log1p(math.exp(-1)) + math.log1p(math.e)) / 2 + (
        math.log(2) + math.log1p(math.exp(2))
    ) / 2
    assert loss.item() == pytest.approx(expected)
    loss.backward()
    assert real.grad.tolist() == pytest.approx(
        [-torch.sigmoid(torch.tensor(-1.0)).item() / 2, -torch.sigmoid(torch.tensor(1.0)).item() / 2]
    )
    gen = non_saturating_g_loss(torch.tensor([0.0]))
    assert gen.item() == pytest.approx(math.log(2))
    assert d_loss("hinge", real, fake).item() == pytest.approx(hinge_d_loss(real, fake).item())
    assert g_loss("non_saturating", fake).item() == pytest.approx(non_saturating_g_loss(fake).item())
    with pytest.raises(ValueError, match="unknown GAN loss"):
        g_loss("wasserstein", fake)


def test_lecam_regularizer_and_ema() -> None:
    real = torch.tensor([1.0, -1.0], requires_grad=True)
    fake = torch.tensor([-2.0, 0.5], requires_grad=True)
    reg = lecam_regularizer(real, fake, ema_real=0.0, ema_fake=-1.0)
    # relu(real - (-1)) = [2, 0]; relu(0 - fake) = [2, 0]
    assert reg.item() == pytest.approx((4 + 0) / 2 + (4 + 0) / 2)
    reg.backward()
    assert real.grad.tolist() == [2.0, 0.0]
    assert fake.grad.tolist() == [-2.0, 0.0]

    ema = LeCamEMA(decay=0.5)
    ema(torch.tensor([2.0]), torch.tensor([-2.0]))  # first update copies the means
    assert (ema.real.item(), ema.fake.item()) == (2.0, -2.0)
    ema.update(torch.tensor([0.0]), torch.tensor([0.0]))
    assert (ema.real.item(), ema.fake.item()) == (1.0, -1.0)
    assert set(ema.state_dict()) == {"real", "fake", "initialized"}
    with pytest.raises(ValueError, match="decay"):
        LeCamEMA(decay=1.0)


def test_adaptive_weight_is_gradient_norm_ratio() -> None:
    w = torch.zeros(3, requires_grad=True)
    a, b = torch.tensor([3.0, 0.0, 4.0]), torch.tensor([0.0, 1.0, 0.0])
    rec, gan = (w * a).sum(), (w * b).sum() * 2  # grads a (norm 5) and 2b (norm 2)
    weight = adaptive_weight(rec, gan, w, eps=0.0)
    assert weight.item() == pytest.approx(2.5)
    assert not weight.requires_grad
    (rec + weight * gan).backward()  # graphs were kept
    assert w.grad.tolist() == pytest.approx([3.0, 5.0, 4.0])
    assert adaptive_weight((w * a).sum(), (w * b).sum() * 1e-9, w, max_weight=100.0).item() == 100.0
    with torch.no_grad():
        assert adaptive_weight((w * a).sum(), (w * b).sum(), w).item() == 0.0


def test_feature_matching_loss() -> None:
    real = [torch.ones(2, 3, requires_grad=True), torch.zeros(4, requires_grad=True)]
    fake = [torch.zeros(2, 3, requires_grad=True), torch.full((4,), 2.0, requires_grad=True)]
    loss = feature_matching_loss(real, fake)
    assert loss.item() == pytest.approx((1.0 + 2.0) / 2)
    loss.backward()
    assert real[0].grad is None  # real features are targets
    torch.testing.assert_close(fake[0].grad, torch.full((2, 3), -1 / 6 / 2))
    assert F.l1_loss(fake[1], real[1]).item() == 2.0
    with pytest.raises(ValueError):
        feature_matching_loss(real, fake[:1])
