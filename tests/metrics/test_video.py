"""PSNR and SSIM on both video layouts."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from videopoet.metrics.video import psnr, ssim


def _clip(seed: int = 0) -> np.ndarray:
    from videopoet.data.synthetic import ShapesConfig, render_frames

    return render_frames(
        "red", "circle", "left", np.random.default_rng(seed), ShapesConfig(size=32, frames=5)
    )


def test_psnr_known_values() -> None:
    a = np.zeros((2, 8, 8, 3), np.uint8)
    assert psnr(a, a) == math.inf
    b = a.copy()
    b[...] = 255  # MSE 1 on the [0, 1] scale: 0 dB
    assert psnr(a, b) == pytest.approx(0.0)
    b[...] = 1  # MSE (1/255)^2: 20 log10(255) dB
    assert psnr(a, b) == pytest.approx(20 * math.log10(255))
    x = torch.zeros(1, 3, 2, 8, 8)  # [-1, 1] layout: 0 is mid-gray; +0.2 there is 0.1 on [0, 1] -> 20 dB
    assert psnr(x, x + 0.2) == pytest.approx(20.0)


def test_ssim_identical_and_noise() -> None:
    clip = _clip()
    assert ssim(clip, clip) == pytest.approx(1.0)
    rng = np.random.default_rng(0)
    scores = []
    for sigma in (5, 20, 60):
        noisy = np.clip(clip + rng.normal(0, sigma, clip.shape), 0, 255).astype(np.uint8)
        scores.append(ssim(clip, noisy))
    assert 1 > scores[0] > scores[1] > scores[2]
    x = torch.from_numpy(clip).permute(3, 0, 1, 2)[None].float() / 127.5 - 1  # same clip, float layout
    assert ssim(x, x) == pytest.approx(1.0)
    assert psnr(clip, noisy) == pytest.approx(
        psnr(x, torch.from_numpy(noisy).permute(3, 0, 1, 2)[None].float() / 127.5 - 1)
    )
    with pytest.raises(ValueError, match="differ in shape"):
        ssim(clip, clip[:2])


def test_ssim_equals_the_full_2d_window_formula() -> None:
    """The separable blur gives what Wang et al.'s 2D 11x11 gaussian window gives, computed directly."""
    import torch.nn.functional as F

    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (3, 24, 20, 3), dtype=np.uint8)
    b = np.clip(a.astype(int) + rng.integers(-40, 40, a.shape), 0, 255).astype(np.uint8)
    x = torch.from_numpy(a).permute(0, 3, 1, 2).double() / 255
    y = torch.from_numpy(b).permute(0, 3, 1, 2).double() / 255
    g = torch.exp(-((torch.arange(11, dtype=torch.float64) - 5) ** 2) / (2 * 1.5**2))
    win = (g[:, None] * g[None, :] / g.sum() ** 2).expand(3, 1, 11, 11)
    blur = lambda z: F.conv2d(z, win, groups=3)  # noqa: E731
    mx, my = blur(x), blur(y)
    sxx, syy, sxy = blur(x * x) - mx**2, blur(y * y) - my**2, blur(x * y) - mx * my
    ref = ((2 * mx * my + 1e-4) * (2 * sxy + 9e-4)) / ((mx**2 + my**2 + 1e-4) * (sxx + syy + 9e-4))
    assert ssim(a, b) == pytest.approx(float(ref.mean()), abs=1e-12)
    assert ssim(a, a) == pytest.approx(1.0)
