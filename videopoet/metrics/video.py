"""Video reconstruction metrics: PSNR and SSIM.

Inputs are videos as uint8 `[..., H, W, 3]` arrays/tensors (0..255) or float tensors `[B, 3, T, H, W]`
/ `[3, T, H, W]` in [-1, 1] (the video tokenizer's layout). Both are mapped to [0, 1] before scoring so
numbers compare across layouts.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F


def _to_unit(x: torch.Tensor | np.ndarray) -> torch.Tensor:
    """Frames `[N, 3, H, W]` float64 in [0, 1] from uint8 channels-last or [-1, 1] channels-first video."""
    t = torch.from_numpy(np.asarray(x)) if isinstance(x, np.ndarray) else x.detach().cpu()
    if t.dtype == torch.uint8:
        if t.shape[-1] != 3:
            raise ValueError(f"uint8 video must end with 3 channels, got shape {tuple(t.shape)}")
        return t.reshape(-1, *t.shape[-3:]).permute(0, 3, 1, 2).double() / 255.0
    if t.ndim == 4:
        t = t[None]
    if t.ndim != 5 or t.shape[1] != 3:
        raise ValueError(
            f"float video must be [B, 3, T, H, W] or [3, T, H, W] in [-1, 1], got {tuple(t.shape)}"
        )
    t = (t.double().clamp(-1, 1) + 1) / 2
    return t.transpose(1, 2).reshape(-1, 3, *t.shape[-2:])


def _pair(a: torch.Tensor | np.ndarray, b: torch.Tensor | np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = _to_unit(a), _to_unit(b)
    if x.shape != y.shape:
        raise ValueError(f"videos differ in shape: {tuple(x.shape)} vs {tuple(y.shape)} (as [N, 3, H, W])")
    return x, y


def psnr(a: torch.Tensor | np.ndarray, b: torch.Tensor | np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB over the whole video (one MSE over all pixels); inf if equal."""
    x, y = _pair(a, b)
    mse = float((x - y).pow(2).mean())
    return math.inf if mse == 0 else 10 * math.log10(1.0 / mse)


def _gaussian(size: int, sigma: float) -> torch.Tensor:
    g = torch.exp(-((torch.arange(size, dtype=torch.float64) - size // 2) ** 2) / (2 * sigma**2))
    return g / g.sum()


def ssim(a: torch.Tensor | np.ndarray, b: torch.Tensor | np.ndarray) -> float:
    """Structural similarity (Wang et al. 2004): 11x11 gaussian window (sigma 1.5), per frame and channel,
    valid region only, averaged over frames; 1 for identical videos. Frames under 11 pixels use a
    window of their smaller side. The window is separable, so the five local moments are blurred as one
    batch by a row then a column filter (float64: the variances are differences of close numbers)."""
    x, y = _pair(a, b)
    size = min(11, x.shape[-1], x.shape[-2])
    g = _gaussian(size, 1.5 * size / 11)
    c1, c2 = 0.01**2, 0.03**2
    n, h, w = x.shape[0], x.shape[-2], x.shape[-1]
    z = torch.cat([x, y, x * x, y * y, x * y]).reshape(-1, 1, h, w)
    z = F.conv2d(F.conv2d(z, g.view(1, 1, 1, -1)), g.view(1, 1, -1, 1))
    mx, my, xx, yy, xy = z.reshape(5, n, 3, *z.shape[-2:])
    sxx, syy, sxy = xx - mx * mx, yy - my * my, xy - mx * my
    s = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx * mx + my * my + c1) * (sxx + syy + c2))
    return float(s.mean(dim=(1, 2, 3)).mean())
