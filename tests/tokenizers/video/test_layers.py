"""The video tokenizer's layers: a causal 3D convolution streams exactly, never looks ahead, and keeps
group-norm statistics per frame."""

from __future__ import annotations

import pytest
import torch

from videopoet.tokenizers.video.layers import CausalConv3d, FrameGroupNorm


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


def test_frame_group_norm_normalises_each_frame_alone() -> None:
    norm = FrameGroupNorm(2, 4, affine=False)
    x = torch.randn(1, 4, 3, 5, 5)
    x[:, :, 2] *= 100  # a loud frame must not change the others' statistics
    y = norm(x)
    for t in range(3):
        frame = y[:, :2, t]
        assert frame.mean().abs() < 1e-5 and abs(frame.var(unbiased=False).item() - 1) < 1e-3
