"""The video tokenizer's building blocks: causal 3D convolutions (streamable through a cache), per-frame
group norm, residual blocks, causal down- and up-sampling, and the encoder and decoder stacks they form
(`model.py` says how they fit: causality, the down-sampling stages, `temporal_kernel`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

if TYPE_CHECKING:  # the config lives beside the model; the layers only read it
    from videopoet.tokenizers.video.model import VideoTokenizerConfig

Cache = dict[nn.Module, Any]  # streaming state per module: conv input tails, "stream started" flags
# frames at least this large (height x width) train through 2D convs: oneDNN's bf16 Conv3d weight gradient
# crashes on AMX CPUs there (`CausalConv3d._as_2d`)
_AMX_SAFE_2D_PIXELS = 96 * 96


def per_frame(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """`fn` of `[N, C, H, W]` applied to every frame of `[B, C, T, H, W]`, the frames folded into the batch."""
    b, t = x.shape[0], x.shape[2]
    return fn(x.transpose(1, 2).flatten(0, 1)).unflatten(0, (b, t)).transpose(1, 2)


class CausalConv3d(nn.Module):
    """3D convolution padded in time on the past side only (zeros at the start of a stream).

    With a `cache` dict it streams: the tail of its padded input that later outputs still need is kept
    in `cache[self]` and put in front of the next chunk, so chunk-by-chunk equals whole-clip."""

    def __init__(
        self,
        cin: int,
        cout: int,
        kernel: int | tuple[int, int, int] = 3,
        stride: tuple[int, int, int] = (1, 1, 1),
    ) -> None:
        super().__init__()
        kt, kh, kw = (kernel,) * 3 if isinstance(kernel, int) else kernel
        self.time_pad, self.time_stride = kt - 1, stride[0]
        self.conv = nn.Conv3d(cin, cout, (kt, kh, kw), stride=stride, padding=(0, kh // 2, kw // 2))

    def forward(self, x: torch.Tensor, cache: Cache | None = None) -> torch.Tensor:
        past = cache.get(self) if cache is not None else None
        if past is not None:
            x = torch.cat([past.to(x.dtype), x], dim=2)
        elif self.time_pad:
            x = F.pad(x, (0, 0, 0, 0, self.time_pad, 0))
        if x.shape[2] < self.conv.kernel_size[0]:
            raise ValueError(f"causal conv got {x.shape[2]} padded frames, needs {self.conv.kernel_size[0]}")
        train = torch.is_grad_enabled() and self.conv.weight.requires_grad
        as_2d = train and (self.conv.kernel_size[0] == 1 or x.shape[3] * x.shape[4] >= _AMX_SAFE_2D_PIXELS)
        y = self._as_2d(x) if as_2d else self.conv(x)
        if cache is not None:
            cache[self] = x[:, :, y.shape[2] * self.time_stride :].clone()
        return y

    def _as_2d(self, x: torch.Tensor) -> torch.Tensor:
        """The Conv3d as one 2D conv per time tap, over the frames folded into the batch, summed. Used while
        training for time kernels of 1 (no slower) and for frames of 96x96 and up (about 2x slower with time
        kernel 3): oneDNN's bf16 Conv3d weight gradient crashes on AMX CPUs (torch 2.11) for inputs of 1-8
        frames at 96x96 and up, e.g. every photograph batch at 128x128, and was not seen to below 96x96
        (docs/results.md, "Real video"). The same numbers up to summation order, which for the 2D conv
        depends on the frame count, so inference keeps the Conv3d: chunked and whole-clip decoding give the
        same uint8 frames."""
        conv, st, kt = self.conv, self.time_stride, self.conv.kernel_size[0]
        t_out = (x.shape[2] - kt) // st + 1
        taps = [
            per_frame(
                lambda f, k=k: F.conv2d(f, conv.weight[:, :, k], conv.bias if k == 0 else None, conv.stride[1:], conv.padding[1:]),
                x[:, :, k : k + st * (t_out - 1) + 1 : st],
            )
            for k in range(kt)
        ]  # fmt: skip
        # the taps are summed in fp32, as the Conv3d accumulates
        return taps[0] if kt == 1 else sum(tap.float() for tap in taps).to(taps[0].dtype)


class FrameGroupNorm(nn.GroupNorm):
    """GroupNorm whose statistics are taken per frame (over channel groups and space, never over time)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return per_frame(lambda f: F.group_norm(f, self.num_groups, self.weight, self.bias, self.eps), x)


class PixelNorm(nn.Module):
    """Layer norm over the channels of each pixel of each frame (ConvNeXt's channels-first LayerNorm).

    Unlike a group norm over a frame it takes no statistics over space, so a flat or smooth frame keeps its
    level: a per-frame norm divides a near-constant group by a near-zero spread, which wipes out the frame's
    colour and amplifies its noise."""

    def __init__(self, channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x.movedim(1, -1), self.weight.shape, self.weight, self.bias, self.eps).movedim(-1, 1)


NORMS = ("group", "pixel")


def frame_norm(kind: str, groups: int, channels: int) -> nn.Module:
    """The tokenizer's normalisation layer: `group` (per-frame group norm) or `pixel` (per-pixel channel norm)."""
    if kind == "pixel":
        return PixelNorm(channels)
    if kind == "group":
        return FrameGroupNorm(groups, channels)
    raise ValueError(f"norm must be one of {', '.join(NORMS)}, got {kind!r}")


class ResBlock(nn.Module):
    """norm -> SiLU -> causal conv, twice, plus a (1x1x1 projected when channels change) skip."""

    def __init__(self, cin: int, cout: int, groups: int, kt: int = 3, norm: str = "group") -> None:
        super().__init__()
        self.norm1 = frame_norm(norm, groups, cin)
        self.conv1 = CausalConv3d(cin, cout, (kt, 3, 3))
        self.norm2 = frame_norm(norm, groups, cout)
        self.conv2 = CausalConv3d(cout, cout, (kt, 3, 3))
        self.skip = nn.Conv3d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor, cache: Cache | None = None) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)), cache)
        h = self.conv2(F.silu(self.norm2(h)), cache)
        return self.skip(x) + h


class Downsample(nn.Module):
    """Strided causal conv: time stride 2 keeps the first frame alone (1 + 2k frames -> 1 + k)."""

    def __init__(self, channels: int, time_stride: int, space_stride: int, kt: int = 3) -> None:
        super().__init__()
        kt = 3 if time_stride > 1 else kt
        self.conv = CausalConv3d(channels, channels, (kt, 3, 3), stride=(time_stride, space_stride, space_stride))

    def forward(self, x: torch.Tensor, cache: Cache | None = None) -> torch.Tensor:
        return self.conv(x, cache)


def drop_stream_start(module: nn.Module, y: torch.Tensor, st: int, cache: Cache | None) -> torch.Tensor:
    """`y` from a time up-sampler without its first `st - 1` frames when this call starts a stream (no
    cache, or the first chunk through `cache`, which remembers that `module` has started)."""
    first = cache is None or module not in cache
    if cache is not None:
        cache[module] = True
    return y[:, :, st - 1 :] if first and st > 1 else y


class Upsample(nn.Module):
    """Causal conv to `st * ss * ss` times `cout` channels, then depth-to-time and depth-to-space; drops
    the first `st - 1` frames of a stream so 1 + k frames become 1 + k * st."""

    def __init__(self, cin: int, cout: int, time_stride: int, space_stride: int, kt: int = 3) -> None:
        super().__init__()
        self.st, self.ss = time_stride, space_stride
        r = time_stride * space_stride * space_stride
        self.conv = CausalConv3d(cin, cout * r, (3 if time_stride > 1 else kt, 3, 3))
        # start as nearest-neighbour up-sampling: every sub-position gets the same filter
        with torch.no_grad():
            w, b = self.conv.conv.weight, self.conv.conv.bias
            w.copy_(w[::r].repeat_interleave(r, dim=0))
            b.copy_(b[::r].repeat_interleave(r, dim=0))

    def forward(self, x: torch.Tensor, cache: Cache | None = None) -> torch.Tensor:
        y = self.conv(x, cache)
        b, c, t, h, w = y.shape
        st, ss = self.st, self.ss
        c //= st * ss * ss
        y = y.reshape(b, c, st, ss, ss, t, h, w).permute(0, 1, 5, 2, 6, 3, 7, 4)
        y = y.reshape(b, c, t * st, h * ss, w * ss)
        return drop_stream_start(self, y, st, cache)


class Encoder(nn.Module):
    """`[B, 3, 1 + k*tf, H, W]` -> `[B, K, 1 + k, H/sf, W/sf]` latents."""

    def __init__(self, cfg: VideoTokenizerConfig) -> None:
        super().__init__()
        chans = [cfg.channels * m for m in cfg.channel_mult]
        strides, kt = cfg.stage_strides(), cfg.temporal_kernel
        self.patch = cfg.patch_size
        self.conv_in = CausalConv3d(3 * self.patch**2, chans[0], (kt, 3, 3))
        self.blocks = nn.ModuleList()
        cin = chans[0]
        for i, ch in enumerate(chans):
            for _ in range(cfg.num_res_blocks):
                self.blocks.append(ResBlock(cin, ch, cfg.norm_groups, kt, cfg.norm))
                cin = ch
            if i < len(strides):
                self.blocks.append(Downsample(ch, *strides[i], kt))
        for _ in range(cfg.num_res_blocks):
            self.blocks.append(ResBlock(cin, cin, cfg.norm_groups, kt, cfg.norm))
        self.norm_out = frame_norm(cfg.norm, cfg.norm_groups, cin)
        self.conv_out = CausalConv3d(cin, cfg.bits, 1)

    def forward(self, x: torch.Tensor, cache: Cache | None = None) -> torch.Tensor:
        if self.patch > 1:
            x = per_frame(lambda f: F.pixel_unshuffle(f, self.patch), x)
        h = self.conv_in(x, cache)
        for block in self.blocks:
            h = block(h, cache)
        return self.conv_out(F.silu(self.norm_out(h)), cache)


class RGBUpsample(nn.Module):
    """The output skips' resampling: frames repeated `time_stride` times (the first `st - 1` of a stream
    dropped, as `Upsample` does) and each frame scaled `space_stride` times bilinearly, so a coarse level's
    colour is a smooth image at the next level's size."""

    def __init__(self, time_stride: int, space_stride: int) -> None:
        super().__init__()
        self.st, self.ss = time_stride, space_stride

    def forward(self, x: torch.Tensor, cache: Cache | None = None) -> torch.Tensor:
        if self.ss > 1:
            x = F.interpolate(x, scale_factor=(1, self.ss, self.ss), mode="trilinear", align_corners=False)
        return drop_stream_start(self, x.repeat_interleave(self.st, dim=2), self.st, cache)


class Decoder(nn.Module):
    """Mirror of the encoder: `[B, K, 1 + k, h, w]` codes -> `[B, 3, 1 + k*tf, h*sf, w*sf]` (unclamped).

    With `output_skips` (StyleGAN2's skip generator) every level also maps its features to RGB with a 1x1
    convolution; those images are up-sampled smoothly (`RGBUpsample`) and summed into the output, so a
    clip's colours and smooth shading come from the coarse levels through a short path and the
    full-resolution convolutions only add detail. With `patch_size` p > 1 the last level works at 1/p the
    resolution: it outputs p x p patches of RGB (depth-to-space), and the skips' image is up-sampled by p."""

    def __init__(self, cfg: VideoTokenizerConfig) -> None:
        super().__init__()
        chans = [cfg.channels * m for m in cfg.channel_mult]
        strides, kt = cfg.stage_strides(), cfg.temporal_kernel
        cin = chans[-1]
        self.conv_in = CausalConv3d(cfg.bits, cin, (kt, 3, 3))
        self.blocks = nn.ModuleList(ResBlock(cin, cin, cfg.norm_groups, kt, cfg.norm) for _ in range(cfg.num_res_blocks))
        self.to_rgb, self.rgb_up = nn.ModuleDict(), nn.ModuleDict()
        for i in reversed(range(len(chans))):
            self.blocks.extend(ResBlock(cin, cin, cfg.norm_groups, kt, cfg.norm) for _ in range(cfg.num_res_blocks))
            if i > 0:
                if cfg.output_skips:  # keyed by the index of the Upsample block they sit before
                    self.to_rgb[str(len(self.blocks))] = CausalConv3d(cin, 3, 1)
                    self.rgb_up[str(len(self.blocks))] = RGBUpsample(*strides[i - 1])
                self.blocks.append(Upsample(cin, chans[i - 1], *strides[i - 1], kt))
                cin = chans[i - 1]
        self.norm_out = frame_norm(cfg.norm, cfg.norm_groups, cin)
        self.patch = cfg.patch_size
        self.conv_out = CausalConv3d(cin, 3 * self.patch**2, (kt, 3, 3))
        self.rgb_out = RGBUpsample(1, self.patch)

    def forward(self, q: torch.Tensor, cache: Cache | None = None) -> torch.Tensor:
        h = self.conv_in(q, cache)
        rgb: torch.Tensor | None = None
        for i, block in enumerate(self.blocks):
            key = str(i)
            if key in self.to_rgb:
                rgb = self.to_rgb[key](h) if rgb is None else rgb + self.to_rgb[key](h)
                rgb = self.rgb_up[key](rgb, cache)
            h = block(h, cache)
        out = self.conv_out(F.silu(self.norm_out(h)), cache)
        if self.patch > 1:
            out = per_frame(lambda f: F.pixel_shuffle(f, self.patch), out)
            rgb = None if rgb is None else self.rgb_out(rgb, cache)
        return out if rgb is None else out + rgb
