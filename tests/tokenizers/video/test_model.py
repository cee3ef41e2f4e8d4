"""The causal video tokenizer: causality, chunked == whole, image/video unification, aspect ratios, preset
shapes, clear errors on bad input, gradients everywhere, and the uint8 Python API."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from videopoet.errors import UserError
from videopoet.tokenizers.video.model import PRESETS, VideoShapeError, VideoTokenizer, VideoTokenizerConfig
from videopoet.tokenizers.video.model import preset as video_preset


def small_config(**overrides) -> VideoTokenizerConfig:
    """Smaller than `tiny` (same factors: space 8, time 4) so the tests stay fast; with 2x2 patches one
    level fewer."""
    base = dict(
        channels=8,
        channel_mult=(1, 2, 2) if overrides.get("patch_size", 1) > 1 else (1, 2, 2, 2),
        num_res_blocks=1,
        norm_groups=4,
        bits=6,
        group_bits=3,
        frames=9,
        height=64,
        width=64,
    )
    return VideoTokenizerConfig(**{**base, **overrides})


@pytest.fixture(
    scope="module",
    params=[(3, "group", 1), (1, "group", 1), (1, "pixel", 1), (1, "pixel", 2)],
    ids=["time_kernel_3", "time_kernel_1", "pixel_skips", "patch_2"],
)
def model(request: pytest.FixtureRequest) -> VideoTokenizer:
    """Full 3D kernels, spatial-only kernels except where time is down/up-sampled, the per-pixel norm
    with the decoder's output skips, and the same on 2x2 patches (one down-sampling stage fewer)."""
    torch.manual_seed(0)
    kernel, norm, patch = request.param
    cfg = small_config(temporal_kernel=kernel, norm=norm, output_skips=norm == "pixel", patch_size=patch)
    return VideoTokenizer(cfg).eval()


def test_temporal_kernel_1_mixes_time_only_where_it_is_resampled() -> None:
    from videopoet.tokenizers.video.layers import CausalConv3d, Downsample, Upsample

    tok = VideoTokenizer(small_config(temporal_kernel=1))
    for parent in tok.modules():
        for child in parent.children():
            if isinstance(child, CausalConv3d):
                resamples_time = (isinstance(parent, Downsample) and child.time_stride > 1) or (
                    isinstance(parent, Upsample) and parent.st > 1
                )
                assert child.conv.kernel_size[0] == (3 if resamples_time else 1), parent
    assert any(isinstance(m, Downsample) and m.conv.time_stride > 1 for m in tok.modules())
    with pytest.raises(ValueError, match="temporal_kernel"):
        small_config(temporal_kernel=2)


def clip(frames: int, height: int = 64, width: int = 64, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(1, 3, frames, height, width, generator=g) * 2 - 1


def test_encoder_is_causal(model: VideoTokenizer) -> None:
    x = clip(13)
    with torch.no_grad():
        z = model.encoder(x)
    assert z.shape == (1, 6, 4, 8, 8)
    for frame in (0, 1, 4, 5, 12):
        changed = x.clone()
        changed[:, :, frame] = -changed[:, :, frame]
        with torch.no_grad():
            z2 = model.encoder(changed)
        span = (frame + 3) // 4  # latent 0 covers frame 0, latent j frames 4j-3 .. 4j
        assert torch.equal(z2[:, :, :span], z[:, :, :span]), f"frame {frame} changed an earlier latent"
        assert not torch.allclose(z2[:, :, span], z[:, :, span]), f"frame {frame} did not reach latent {span}"


def test_decoder_is_causal(model: VideoTokenizer) -> None:
    ids = torch.randint(0, 64, (1, 4, 8, 8), generator=torch.Generator().manual_seed(1))
    video = model.decode_ids(ids)
    assert video.shape == (1, 3, 13, 64, 64)
    for latent in (1, 2, 3):
        changed = ids.clone()
        changed[:, latent] = (changed[:, latent] + 1) % 64
        video2 = model.decode_ids(changed)
        first = 1 + (latent - 1) * 4  # first frame latent `latent` decodes to
        assert torch.equal(video2[:, :, :first], video[:, :, :first])
        assert not torch.allclose(video2[:, :, first : first + 4], video[:, :, first : first + 4])


@pytest.mark.parametrize("width", [64, 112])
@pytest.mark.slow  # long clips
def test_chunked_encoding_equals_whole(model: VideoTokenizer, width: int) -> None:
    x = clip(17, 64, width, seed=2)
    whole = model.encode(x)
    assert whole.shape == (1, 5, 8, width // 8)
    for chunk in (4, 8, 11):  # 11 rounds down to 8
        assert torch.equal(model.encode(x, chunk_frames=chunk), whole)
    with torch.no_grad():
        cache: dict = {}
        z_chunks = torch.cat(
            [model.encoder(x[:, :, a:b], cache) for a, b in ((0, 5), (5, 9), (9, 17))], dim=2
        )
        torch.testing.assert_close(z_chunks, model.encoder(x), rtol=0, atol=1e-5)


def test_chunked_decoding_equals_whole(model: VideoTokenizer) -> None:
    ids = model.encode(clip(17, seed=3))
    whole = model.decode_ids(ids)
    for chunk in (4, 8):
        torch.testing.assert_close(model.decode_ids(ids, chunk_frames=chunk), whole, rtol=0, atol=1e-5)


def test_image_is_first_latent_frame_of_video(model: VideoTokenizer) -> None:
    x = clip(9, seed=4)
    image_ids = model.encode(x[:, :, :1])
    assert image_ids.shape == (1, 1, 8, 8)
    video_ids = model.encode(x)
    assert torch.equal(image_ids, video_ids[:, :1])
    image = model.decode_ids(image_ids)
    assert image.shape == (1, 3, 1, 64, 64)
    torch.testing.assert_close(image, model.decode_ids(video_ids)[:, :, :1], rtol=0, atol=1e-5)


@pytest.mark.parametrize("size", [(64, 64), (64, 112), (112, 64)])
def test_aspect_ratios_round_trip_shapes(model: VideoTokenizer, size: tuple[int, int]) -> None:
    h, w = size
    assert model.latent_shape(9, h, w) == (3, h // 8, w // 8)
    x = clip(9, h, w)
    recon, quant = model(x)
    assert recon.shape == x.shape
    assert quant.ids.shape == (1, 3, h // 8, w // 8)
    ids = model.encode(x)
    assert ids.dtype == torch.int64 and torch.equal(ids, quant.ids)
    out = model.decode_ids(ids)
    assert out.shape == x.shape and out.min() >= -1 and out.max() <= 1


def test_uint8_frames_api(model: VideoTokenizer) -> None:
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (9, 64, 112, 3), dtype=np.uint8)
    ids = model.encode_frames(frames)
    assert ids.shape == (3, 8, 14) and ids.dtype == torch.int64 and ids.device.type == "cpu"
    batch = model.encode_frames(np.stack([frames, frames[::-1]]))
    assert batch.shape == (2, 3, 8, 14)
    assert torch.equal(batch[0], ids)
    x = torch.from_numpy(frames).permute(3, 0, 1, 2)[None].float() / 127.5 - 1
    assert torch.equal(model.encode(x), ids[None])
    assert torch.equal(model.encode_frames(frames, chunk_frames=4), ids)
    out = model.decode_to_frames(ids)
    assert out.shape == (9, 64, 112, 3) and out.dtype == torch.uint8
    assert model.decode_to_frames(batch).shape == (2, 9, 64, 112, 3)
    assert torch.equal(model.decode_to_frames(ids, chunk_frames=4), out)


EXPECTED = {  # preset: (frames, height, width) -> latent (t, h, w)
    "tiny": ((17, 64, 64), (5, 8, 8)),
    "videopoet": ((17, 128, 128), (5, 16, 16)),
    "8x16x16": ((57, 128, 128), (8, 16, 16)),
    "4x16x16": ((25, 128, 128), (4, 16, 16)),
}


@pytest.mark.parametrize("name", list(PRESETS))
def test_preset_shapes_on_meta_device(name: str) -> None:
    cfg = video_preset(name)
    (frames, h, w), latent = EXPECTED[name]
    assert (cfg.frames, cfg.height, cfg.width) == (frames, h, w)
    with torch.device("meta"):
        model = VideoTokenizer(cfg)
        x = torch.empty(1, 3, frames, h, w)
        z = model.encoder(x)
        y = model.decoder(z)
    assert model.latent_shape(frames, h, w) == latent
    assert tuple(z.shape) == (1, cfg.bits, *latent)
    assert tuple(y.shape) == tuple(x.shape)
    assert model.latent_shape(frames, 128, 224)[2] == 224 // cfg.spatial_factor
    assert model.num_parameters() > 0


def test_spatial_16_and_time_factors() -> None:
    for sf, tf, mult in ((16, 1, (1, 1, 1, 1, 1)), (4, 2, (1, 1, 1)), (8, 8, (1, 1, 1, 1))):
        cfg = small_config(spatial_factor=sf, temporal_factor=tf, channel_mult=mult, frames=1 + 2 * tf)
        with torch.device("meta"):
            model = VideoTokenizer(cfg)
            x = torch.empty(1, 3, 1 + 2 * tf, 64, 96)
            z = model.encoder(x)
            assert tuple(z.shape) == (1, 6, 3, 64 // sf, 96 // sf)
            assert tuple(model.decoder(z).shape) == tuple(x.shape)


def test_bad_shapes_say_what_fits(model: VideoTokenizer) -> None:
    with pytest.raises(VideoShapeError, match=r"18 frames do not fit 1 \+ k\*4.*use 17 or 21"):
        model.check_input(18, 64, 64)
    with pytest.raises(
        VideoShapeError, match="height 60 is not a multiple of the spatial factor 8; use 56 or 64"
    ):
        model.check_input(17, 60, 64)
    with pytest.raises(VideoShapeError, match="width 4 .* use 8"):
        model.latent_shape(17, 64, 4)
    with pytest.raises(VideoShapeError, match="at least 1 frame"):
        model.check_input(0, 64, 64)
    with pytest.raises(VideoShapeError, match=r"\[B, 3, T, H, W\]"):
        model.encode(torch.zeros(3, 9, 64, 64))
    with pytest.raises(VideoShapeError, match="uint8"):
        model.encode_frames(np.zeros((9, 64, 64, 3), dtype=np.float32))
    with pytest.raises(VideoShapeError, match=r"\[0, 64\)"):
        model.decode_ids(torch.full((1, 1, 8, 8), 64))
    with pytest.raises(VideoShapeError, match="chunk_frames"):
        model.encode(clip(9), chunk_frames=2)
    assert issubclass(VideoShapeError, UserError)


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="spatial_factor must be 4, 8 or 16"):
        small_config(spatial_factor=6)
    with pytest.raises(ValueError, match="temporal_factor must be 1, 2, 4 or 8"):
        small_config(temporal_factor=3)
    with pytest.raises(ValueError, match="need at least 4"):
        small_config(spatial_factor=16)
    with pytest.raises(ValueError, match="patch_size must be 1, 2 or 4"):
        small_config(patch_size=3)
    with pytest.raises(ValueError, match="need at least 2"):  # 2x2 patches leave 2 spatial stages of 8
        small_config(patch_size=2, channel_mult=(1, 2))
    assert small_config(patch_size=2, channel_mult=(1, 2, 2)).stage_strides() == [(2, 2), (2, 2)]
    with pytest.raises(ValueError, match="norm_groups"):
        small_config(norm_groups=3)
    with pytest.raises(ValueError, match="norm must be one of group, pixel"):
        small_config(norm="batch")
    with pytest.raises(ValueError, match="frames 10"):
        small_config(frames=10)
    with pytest.raises(ValueError, match="multiples of spatial_factor"):
        small_config(height=60)
    with pytest.raises(ValueError, match="LFQ bits"):
        small_config(bits=0)
    with pytest.raises(UserError, match="choose one of"):
        video_preset("huge")
    assert video_preset("tiny", bits=8).bits == 8
    assert PRESETS["tiny"].bits == 10  # presets are copied, not changed


@pytest.mark.parametrize("skips, patch", [(False, 1), (True, 1), (True, 2)])
def test_gradients_reach_every_parameter(skips: bool, patch: int) -> None:
    torch.manual_seed(0)
    model = VideoTokenizer(small_config(output_skips=skips, patch_size=patch)).train()
    x = clip(5)
    recon, quant = model(x)
    ((recon - x).abs().mean() + quant.loss).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing
    assert model.last_layer is model.decoder.conv_out.conv.weight


def test_bf16_autocast_forward() -> None:
    torch.manual_seed(0)
    model = VideoTokenizer(small_config())
    x = clip(5)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        recon, quant = model(x)
    assert recon.dtype == torch.bfloat16 and quant.loss.dtype == torch.float32
    assert recon.shape == x.shape and torch.isfinite(recon.float()).all()
