"""The H.264 and Opus references at a matched rate, and x264's rate-distortion curve."""

from __future__ import annotations

import math

import numpy as np
import pytest

from videopoet.media.codecs import (
    _nal_units,
    h264_at_rate,
    h264_curve,
    h264_encode,
    h264_reference,
    h264_roundtrip,
    opus_reference,
)


def _clip(seed: int = 0) -> np.ndarray:
    from videopoet.data.synthetic import ShapesConfig, render_frames

    return render_frames(
        "red", "circle", "left", np.random.default_rng(seed), ShapesConfig(size=32, frames=5)
    )


def test_h264_reference_at_matched_bpp() -> None:
    clip = _clip()
    low = h264_reference(clip, 8.0, 0.3)
    high = h264_reference(clip, 8.0, 3.0)
    assert all(math.isfinite(v) for v in (*low, *high))
    assert high[2] <= 3.0 and high[0] >= low[0]


def _noise_gradient(t: int = 5, h: int = 32, w: int = 32, seed: int = 0) -> np.ndarray:
    """A moving color gradient under gray noise: content whose x264 rate falls steadily with crf."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    frames = [np.stack([(x + 3 * i) * 4, y * 6, (x + y + 2 * i) * 3], -1) for i in range(t)]
    return np.clip(np.stack(frames) + rng.normal(0, 12, (t, h, w, 1)), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def curve() -> list[dict[str, float]]:
    return h264_curve(_noise_gradient(), 8.0, crfs=range(51, -1, -12))  # crf 51, 39, 27, 15, 3


def test_payload_bits_leave_out_the_x264_sei() -> None:
    clip = _noise_gradient()
    _, bpp, packet_bpp = h264_roundtrip(clip, 8.0, 51)
    # x264's version/options SEI (hundreds of bytes) rides in the first packet: payload is well below
    assert 0 < bpp < packet_bpp - 400 * 8 / clip[..., 0].size
    assert h264_encode(clip, 8.0, 51, preset="veryslow")[1] == pytest.approx(packet_bpp)
    assert [u[0] & 31 for u in _nal_units(b"\x00\x00\x00\x01\x67ab\x00\x00\x01\x65cd\x00")] == [7, 5]
    assert [len(u) for u in _nal_units(b"\x00\x00\x00\x03\x41ab\x00\x00\x00\x02\x01c")] == [3, 2]


def test_x264_repeats_itself() -> None:
    # x264's assembly gave 4 different results in 30 encodes of this clip on an AVX-512 CPU (MB-tree rate
    # control); the judge of the tokenizer benchmarks must give one.
    clip = _noise_gradient(5, 64, 64, seed=1)
    runs = [h264_roundtrip(clip, 8.0, 51) for _ in range(20)]
    assert all(np.array_equal(runs[0][0], d) and (b, pb) == runs[0][1:] for d, b, pb in runs[1:])


def test_curve_rate_falls_as_crf_rises(curve: list[dict[str, float]]) -> None:
    assert [p["crf"] for p in curve] == [51, 39, 27, 15, 3]  # sorted by rate: highest crf first
    rates = [p["bpp"] for p in curve]
    assert all(a < b for a, b in zip(rates, rates[1:]))
    assert curve[-1]["psnr"] > curve[0]["psnr"] + 10 and curve[-1]["ssim"] > curve[0]["ssim"]
    assert all(math.isfinite(p[k]) for p in curve for k in ("bpp", "packet_bpp", "psnr", "ssim"))


def test_at_rate_interpolates_in_log_bpp(curve: list[dict[str, float]]) -> None:
    p0, p1 = curve[1], curve[2]
    mid = math.sqrt(p0["bpp"] * p1["bpp"])  # halfway in log(bpp)
    at = h264_at_rate(curve, mid)
    assert at["reachable"] and at["interpolated"] and at["bpp"] == mid
    assert at["psnr"] == pytest.approx((p0["psnr"] + p1["psnr"]) / 2)
    assert min(p0["ssim"], p1["ssim"]) <= at["ssim"] <= max(p0["ssim"], p1["ssim"])
    assert at["nearest"]["crf"] in (p0["crf"], p1["crf"]) and at["lowest"] == curve[0]
    exact = h264_at_rate(curve, p1["bpp"])
    assert exact["psnr"] == pytest.approx(p1["psnr"]) and exact["nearest"] == p1
    top = h264_at_rate(curve, 10 * curve[-1]["bpp"])
    assert top["reachable"] and not top["interpolated"] and top["psnr"] == curve[-1]["psnr"]


def test_at_rate_below_the_floor_is_flagged(curve: list[dict[str, float]]) -> None:
    lowest = curve[0]
    assert lowest["crf"] == 51
    at = h264_at_rate(curve, lowest["bpp"] / 3)
    assert not at["reachable"] and not at["interpolated"]
    assert (at["bpp"], at["psnr"], at["ssim"]) == (lowest["bpp"], lowest["psnr"], lowest["ssim"])
    assert at["nearest"] == lowest
    with pytest.raises(ValueError, match="empty"):
        h264_at_rate([], 0.1)


def test_curve_ties_sorting_and_max_bpp() -> None:
    fake = [
        {"crf": 40, "bpp": 0.2, "psnr": 30.0, "ssim": 0.9},
        {"crf": 51, "bpp": 0.1, "psnr": 20.0, "ssim": 0.5},
        {"crf": 45, "bpp": 0.4, "psnr": 40.0, "ssim": 0.95},
    ]
    assert h264_at_rate(fake, 0.2 * math.sqrt(2))["psnr"] == pytest.approx(35.0)  # unsorted input is fine
    clip = _noise_gradient()
    short = h264_curve(clip, 8.0, crfs=[30, 40], max_bpp=0.0)  # crf 51 always, and the sweep stops there
    assert [p["crf"] for p in short] == [51]
    with pytest.raises(ValueError, match="0..51"):
        h264_curve(clip, 8.0, crfs=[52])
    with pytest.raises(ValueError, match="preset"):
        h264_curve(clip, 8.0, preset="glacial", crfs=[51])


@pytest.mark.parametrize("preset", ["veryslow", "medium"])
def test_curve_presets_and_odd_sizes(preset: str) -> None:
    clip = _noise_gradient(t=3, h=21, w=27)  # odd sides are padded for 4:2:0, then cropped back
    pts = h264_curve(clip, 8.0, preset=preset, crfs=[51, 20])
    assert [p["crf"] for p in pts] == [51, 20] and pts[0]["bpp"] < pts[1]["bpp"]
    assert pts[1]["psnr"] > pts[0]["psnr"] and all(math.isfinite(p["psnr"]) for p in pts)


@pytest.mark.parametrize("sr,kbps", [(16000, 0.8), (24000, 12.0), (22050, 8.0)])
def test_opus_reference(sr: int, kbps: float) -> None:
    tone = (0.5 * np.sin(2 * np.pi * 392 * np.arange(sr) / sr)).astype(np.float32)
    ref = opus_reference(tone, sr, kbps)
    assert ref["bitrate_kbps"] == max(kbps, 6.0)  # clamped to Opus' minimum
    assert ref["si_sdr"] > 10 and np.isfinite(ref["mel_distance"])
