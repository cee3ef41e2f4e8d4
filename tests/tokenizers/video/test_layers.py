"""The video tokenizer's layers: a causal 3D convolution streams exactly, never looks ahead, and keeps
group-norm statistics per frame; the pixel norm takes none over space and keeps a flat frame's level."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from videopoet.tokenizers.video.layers import (
    CausalConv3d,
    FrameGroupNorm,
    PixelNorm,
    RGBUpsample,
    Upsample,
    frame_norm,
)


def test_causal_conv_streamed_in_chunks_equals_the_whole_clip() -> None:
    torch.manual_seed(0)
    conv = CausalConv3d(3, 4, 3).eval()
    x = torch.randn(1, 3, 9, 8, 8)
    with torch.no_grad():
        whole = conv(x)
        cache: dict = {}
        parts = [conv(x[:, :, i : i + 3], cache) for i in range(0, 9, 3)]
    assert whole.shape == (1, 4, 9, 8, 8)
    assert torch.allclose(torch.cat(parts, dim=2), whole, atol=1e-6)


def test_causal_conv_never_sees_later_frames() -> None:
    torch.manual_seed(0)
    conv = CausalConv3d(2, 2, 3, stride=(2, 1, 1)).eval()
    x = torch.randn(1, 2, 7, 4, 4)
    changed = x.clone()
    changed[:, :, 5:] = 0
    with torch.no_grad():
        a, b = conv(x), conv(changed)
    assert torch.equal(a[:, :, :3], b[:, :, :3])  # outputs 0-2 read input frames 0-4 only (stride 2)
    with pytest.raises(ValueError, match="padded frames"):
        CausalConv3d(2, 2, 3)(torch.randn(1, 2, 0, 4, 4))


@pytest.mark.parametrize(
    ("kernel", "stride"), [((1, 3, 3), (1, 1, 1)), ((1, 3, 3), (1, 2, 2)), ((3, 3, 3), (1, 1, 1)), ((3, 3, 3), (2, 2, 2))]
)
def test_training_runs_2d_convs_with_the_conv3d_numbers(kernel: tuple[int, int, int], stride: tuple[int, int, int]) -> None:
    torch.manual_seed(0)
    conv = CausalConv3d(4, 5, kernel, stride=stride)
    x = torch.randn(2, 4, 5, 8, 6, requires_grad=True)
    padded = F.pad(x, (0, 0, 0, 0, kernel[0] - 1, 0))
    y = conv._as_2d(padded)  # training takes this path for time kernel 1, or frames of 96x96 and up
    ref = conv.conv(padded)  # the module's own Conv3d, the definition
    if kernel[0] == 1:
        assert torch.equal(conv(x), y)
    assert y.shape == ref.shape
    assert torch.allclose(y, ref, atol=1e-5)
    got = torch.autograd.grad(y.square().sum(), (x, conv.conv.weight, conv.conv.bias))
    want = torch.autograd.grad(ref.square().sum(), (x, conv.conv.weight, conv.conv.bias))
    assert all(torch.allclose(g, w, rtol=1e-4, atol=1e-4) for g, w in zip(got, want, strict=True))


@pytest.mark.parametrize("kt", [1, 3])
def test_bf16_weight_gradient_of_photographs_at_128(kt: int) -> None:
    # oneDNN's bf16 Conv3d weight gradient crashed the process on AMX CPUs (torch 2.11) for inputs of few
    # frames at 96x96 and up: training at 128x128 died on its first photograph batch.
    conv = CausalConv3d(16, 16, (kt, 3, 3))
    x = torch.randn(1, 16, 1, 128, 128)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = conv(x)
    y.float().square().mean().backward()
    assert conv.conv.weight.grad is not None and torch.isfinite(conv.conv.weight.grad).all()


def test_frame_group_norm_normalises_each_frame_alone() -> None:
    norm = FrameGroupNorm(2, 4, affine=False)
    x = torch.randn(1, 4, 3, 5, 5)
    x[:, :, 2] *= 100  # a loud frame must not change the others' statistics
    y = norm(x)
    for t in range(3):
        frame = y[:, :2, t]
        assert frame.mean().abs() < 1e-5 and abs(frame.var(unbiased=False).item() - 1) < 1e-3


def test_pixel_norm_is_a_layer_norm_over_each_pixels_channels() -> None:
    torch.manual_seed(0)
    norm = PixelNorm(4)
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5)
        norm.bias.uniform_(-1, 1)
    x = torch.randn(2, 4, 3, 5, 6)
    want = F.layer_norm(x.permute(0, 2, 3, 4, 1), (4,), norm.weight, norm.bias, norm.eps).permute(0, 4, 1, 2, 3)
    assert torch.allclose(norm(x), want, atol=1e-6)
    changed = x.clone()
    changed[:, :, :, :2] *= 50  # other pixels' outputs do not move: no statistics over space or time
    assert torch.equal(norm(changed)[:, :, :, 2:], norm(x)[:, :, :, 2:])


def test_flat_frames_a_two_channel_group_norm_merges_stay_apart_under_the_pixel_norm() -> None:
    """Why `norm: pixel` exists: on a flat frame a group norm with two channels per group keeps only
    which channel of each pair is larger, so frames of different colour come out the same."""
    a = torch.tensor([1.0, 2.0, 3.0, 5.0]).view(1, 4, 1, 1, 1).expand(1, 4, 2, 4, 4)
    b = torch.tensor([1.0, 3.0, 2.0, 7.0]).view(1, 4, 1, 1, 1).expand(1, 4, 2, 4, 4)
    group, pixel = frame_norm("group", 2, 4), frame_norm("pixel", 2, 4)
    assert torch.allclose(group(a), group(b), atol=1e-4)
    assert (pixel(a) - pixel(b)).abs().max() > 0.3
    with pytest.raises(ValueError, match="norm must be one of"):
        frame_norm("batch", 2, 4)


def test_rgb_skips_follow_the_upsamplers_frames_and_stay_smooth() -> None:
    """An output skip's image lands on the frames `Upsample` makes from the same latent frame, streamed or
    whole, and a flat colour stays flat."""
    up, skip = Upsample(1, 1, 2, 2, kt=3), RGBUpsample(2, 2)
    x = torch.arange(4.0).view(1, 1, 4, 1, 1).expand(1, 1, 4, 2, 2)
    y = skip(x)
    assert y.shape == up(x).shape == (1, 1, 7, 4, 4)
    assert y[0, 0, :, 0, 0].tolist() == [0, 1, 1, 2, 2, 3, 3]  # latent frame 0 is the first frame alone
    cache: dict = {}
    assert torch.equal(torch.cat([skip(x[:, :, :2], cache), skip(x[:, :, 2:], cache)], dim=2), y)
    assert torch.equal(skip(torch.full((1, 3, 2, 3, 5), 0.25)), torch.full((1, 3, 3, 6, 10), 0.25))
    ramp = skip(torch.tensor([[0.0, 1.0]]).view(1, 1, 1, 1, 2).expand(1, 1, 1, 2, 2))[0, 0, 0, 0]
    assert ramp.tolist() == [0.0, 0.25, 0.75, 1.0]  # bilinear: a smooth ramp, not blocks
