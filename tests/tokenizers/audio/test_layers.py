"""The audio codec's layers: lengths follow the stride, causal convolutions do not look ahead, and the
context span bounds how far an output reaches."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from videopoet.tokenizers.audio.layers import Conv1d, ConvTranspose1d, context_span, fan_in_init
from videopoet.tokenizers.audio.model import AudioTokenizer, AudioTokenizerConfig


def test_lengths_follow_the_stride() -> None:
    x = torch.randn(2, 3, 64)
    for causal in (False, True):
        assert Conv1d(3, 5, 7, stride=4, causal=causal)(x).shape == (2, 5, 16)
        assert ConvTranspose1d(3, 5, 4, causal=causal)(x).shape == (2, 5, 256)


def test_causal_layers_do_not_look_ahead() -> None:
    torch.manual_seed(0)
    conv, up = Conv1d(1, 2, 5, dilation=2, causal=True), ConvTranspose1d(1, 2, 4, causal=True)
    x = torch.randn(1, 1, 40)
    later = x.clone()
    later[..., 20:] += 1.0
    with torch.no_grad():
        assert torch.equal(conv(x)[..., :20], conv(later)[..., :20])
        assert torch.equal(up(x)[..., : 20 * 4], up(later)[..., : 20 * 4])


def test_context_span_bounds_the_receptive_field() -> None:
    layers = nn.Sequential(Conv1d(1, 1, 3), Conv1d(1, 1, 3, stride=2), Conv1d(1, 1, 3, dilation=2))
    assert context_span(layers, 1.0) == 2 + 2 + 4 * 2  # each conv's extent, in input samples
    torch.manual_seed(0)
    causal = nn.Sequential(Conv1d(1, 1, 3, causal=True), Conv1d(1, 1, 3, causal=True))
    x = torch.randn(1, 1, 32)
    poked = x.clone()
    poked[..., 10] += 1.0
    with torch.no_grad():
        diff = (causal(x) - causal(poked)).abs()[0, 0]
    reach = int(context_span(causal, 1.0))
    assert diff[10] > 0 and torch.all(diff[11 + reach :] == 0) and torch.all(diff[:10] == 0)


def test_fan_in_init_keeps_the_signal_scale_where_the_default_shrinks_it() -> None:
    """A fresh codec with PyTorch's default init outputs a quiet, mostly constant signal (a plateau before
    it learns); with `init: fan_in` its output is about as loud as its input and centred, also under weight
    norm."""
    x = 0.1 * torch.randn(2, 1, 3200)
    for wn in (False, True):
        out = {}
        for init in ("torch", "fan_in"):
            torch.manual_seed(0)
            cfg = AudioTokenizerConfig(strides=(4, 4, 5), channels=8, latent_dim=16, causal=False, weight_norm=wn, init=init)
            with torch.no_grad():
                out[init] = AudioTokenizer(cfg)(x, quantize=False)[0]
        assert out["torch"].std() < 0.8 * x.std()
        assert 0.3 * x.std() < out["fan_in"].std() < 3 * x.std()
        assert out["fan_in"].mean().abs() < 0.1 * out["fan_in"].std()
    conv = nn.Conv1d(64, 64, 7)
    fan_in_init(conv)
    assert conv.weight.std().item() == pytest.approx((64 * 7) ** -0.5, rel=0.1) and conv.bias.abs().max() == 0


def test_transposed_conv_input_gradient_under_cpu_bf16_autocast() -> None:
    # oneDNN's bf16 ConvTranspose1d gave input gradients 110% off on AMX CPUs (torch 2.11) at this shape,
    # and the codec learned nothing (demo SI-SDR -56 dB)
    torch.manual_seed(0)
    up = ConvTranspose1d(32, 16, 4, weight_norm=False)
    x = torch.randn(8, 32, 1000, requires_grad=True)
    grads = []
    for bf16 in (False, True):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            y = up(x)
        (gx,) = torch.autograd.grad((y.float() * torch.linspace(-1, 1, y.shape[-1])).sum(), x)
        grads.append(gx)
    assert ((grads[1] - grads[0]).norm() / grads[0].norm()).item() < 0.02
