"""The audio codec's building blocks: (optionally causal) weight-normalised 1D convolutions and transposed
convolutions, dilated residual units, and the encoder and decoder stacks (`model.py` says how they fit)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

if TYPE_CHECKING:  # the config lives beside the model; the layers only read it
    from videopoet.tokenizers.audio.model import AudioTokenizerConfig


class Conv1d(nn.Module):
    """Conv1d whose output has length L / stride for L a multiple of stride: padding is on the left only
    when causal, split evenly (extra on the left) otherwise."""

    def __init__(
        self,
        cin: int,
        cout: int,
        kernel: int,
        stride: int = 1,
        dilation: int = 1,
        causal: bool = False,
        weight_norm: bool = True,
    ) -> None:
        super().__init__()
        self.kernel, self.stride, self.dilation = kernel, stride, dilation
        total = (kernel - 1) * dilation + 1 - stride
        self.pad = (total, 0) if causal else (total - total // 2, total // 2)
        symmetric = self.pad[0] == self.pad[1]
        conv = nn.Conv1d(
            cin, cout, kernel, stride, padding=self.pad[0] if symmetric else 0, dilation=dilation
        )
        self.conv = nn.utils.parametrizations.weight_norm(conv) if weight_norm else conv
        self.explicit_pad = not symmetric

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.explicit_pad:
            x = F.pad(x, self.pad)
        return self.conv(x)


class ConvTranspose1d(nn.Module):
    """Transposed conv with kernel 2*stride whose output has length L * stride: the surplus is trimmed on
    the right when causal (so output sample t sees inputs up to t // stride only), split otherwise."""

    def __init__(
        self, cin: int, cout: int, stride: int, causal: bool = False, weight_norm: bool = True
    ) -> None:
        super().__init__()
        self.kernel, self.stride = 2 * stride, stride
        conv = nn.ConvTranspose1d(cin, cout, 2 * stride, stride)
        self.conv = nn.utils.parametrizations.weight_norm(conv) if weight_norm else conv
        total = self.kernel - stride
        self.trim = (0, total) if causal else (total - total // 2, total // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.device.type == "cpu" and torch.is_autocast_enabled("cpu"):
            # fp32 on the CPU: oneDNN's bf16 ConvTranspose1d gives wrong input gradients on AMX CPUs (torch
            # 2.11; e.g. 32 -> 16 channels, stride 4, 1000 steps: 110% error), and the codec learned nothing
            with torch.autocast("cpu", enabled=False):
                y = self.conv(x.float())
        else:
            y = self.conv(x)
        return y[..., self.trim[0] : y.shape[-1] - self.trim[1]]


class ResidualUnit(nn.Module):
    """x + Conv1x1(ELU(DilatedConv(ELU(x)))), SoundStream's residual unit."""

    def __init__(self, ch: int, kernel: int, dilation: int, causal: bool, weight_norm: bool) -> None:
        super().__init__()
        self.dilated = Conv1d(ch, ch, kernel, dilation=dilation, causal=causal, weight_norm=weight_norm)
        self.pointwise = Conv1d(ch, ch, 1, weight_norm=weight_norm)
        self.act = nn.ELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.pointwise(self.act(self.dilated(self.act(x))))


def context_span(layers: nn.Sequential, rate: float) -> float:
    """An upper bound, in input samples, of how far one output of `layers` reaches (sum over every conv of
    its kernel extent times the sample spacing of its input). `rate`: samples per input element."""
    span = 0.0
    for m in layers.modules():
        if isinstance(m, Conv1d):
            span += (m.kernel - 1) * m.dilation * rate
            rate *= m.stride
        elif isinstance(m, ConvTranspose1d):
            span += m.kernel * rate
            rate /= m.stride
    return span


class Encoder(nn.Module):
    """Conv -> [residual units (dilations), ELU, strided conv] per stride -> ELU -> conv to latent_dim."""

    def __init__(self, c: AudioTokenizerConfig) -> None:
        super().__init__()
        ch = c.channels
        layers: list[nn.Module] = [Conv1d(1, ch, c.kernel_size, causal=c.causal, weight_norm=c.weight_norm)]
        for s in c.strides:
            layers += [ResidualUnit(ch, c.kernel_size, d, c.causal, c.weight_norm) for d in c.dilations]
            layers += [
                nn.ELU(),
                Conv1d(ch, 2 * ch, 2 * s, stride=s, causal=c.causal, weight_norm=c.weight_norm),
            ]
            ch *= 2
        layers += [nn.ELU(), Conv1d(ch, c.latent_dim, 3, causal=c.causal, weight_norm=c.weight_norm)]
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class Decoder(nn.Module):
    """Mirror of the encoder: conv -> [ELU, transposed conv, residual units] per stride -> ELU -> conv."""

    def __init__(self, c: AudioTokenizerConfig) -> None:
        super().__init__()
        ch = c.channels * 2 ** len(c.strides)
        layers: list[nn.Module] = [
            Conv1d(c.latent_dim, ch, c.kernel_size, causal=c.causal, weight_norm=c.weight_norm)
        ]
        for s in reversed(c.strides):
            layers += [nn.ELU(), ConvTranspose1d(ch, ch // 2, s, causal=c.causal, weight_norm=c.weight_norm)]
            ch //= 2
            layers += [ResidualUnit(ch, c.kernel_size, d, c.causal, c.weight_norm) for d in c.dilations]
        layers += [nn.ELU(), Conv1d(ch, 1, c.kernel_size, causal=c.causal, weight_norm=c.weight_norm)]
        self.layers = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.layers(z)


RESIDUAL_INIT_SCALE = 0.1


def fan_in_init(module: nn.Module) -> None:
    """Normal weights with std 1/sqrt(fan_in) and zero biases on every (transposed) convolution, so each
    layer keeps its input's scale (PyTorch's default shrinks it by about sqrt(3)); the last conv of each
    residual unit starts scaled down (`RESIDUAL_INIT_SCALE`) so the units start near identity instead of
    adding their variance to the stream's, and a fresh codec's output is about as loud as its input."""
    residual_outputs = {id(r.pointwise.conv) for r in module.modules() if isinstance(r, ResidualUnit)}
    for m in module.modules():
        if isinstance(m, (nn.Conv1d, nn.ConvTranspose1d)):
            with torch.no_grad():
                fan_in = m.weight.shape[1 if isinstance(m, nn.Conv1d) else 0] * m.weight.shape[-1]
                if isinstance(m, nn.ConvTranspose1d):
                    fan_in //= m.stride[0]  # each output sample sums kernel / stride taps per input channel
                weight = torch.randn_like(m.weight) * fan_in**-0.5
                if id(m) in residual_outputs:
                    weight = weight * RESIDUAL_INIT_SCALE
                if parametrize.is_parametrized(m, "weight"):
                    m.weight = weight  # weight norm: sets its direction and gain through its right inverse
                else:
                    m.weight.copy_(weight)
                if m.bias is not None:
                    m.bias.zero_()
