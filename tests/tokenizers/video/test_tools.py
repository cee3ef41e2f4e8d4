"""encode / decode / eval on files: mp4 and PNG round trips, chunked file encoding == whole, eval JSON with
the H.264 reference and x264's rate-distortion curve, and clear errors for clips that do not fit."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from videopoet.errors import UserError
from videopoet.tokenizers.video.model import VideoShapeError


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A small untrained tokenizer folder (space 8, time 4), a 24-frame shapes mp4 and a PNG."""
    from PIL import Image

    from videopoet.data.synthetic import ShapesConfig, render_frames
    from videopoet.media import write_video
    from videopoet.tokenizers.checkpoint import save_tokenizer
    from videopoet.tokenizers.video.model import VideoTokenizer, VideoTokenizerConfig

    root = tmp_path_factory.mktemp("tools")
    cfg = VideoTokenizerConfig(channels=8, channel_mult=(1, 2, 2, 2), num_res_blocks=1, norm_groups=4, bits=6,
                               group_bits=3, frames=9, height=32, width=32)  # fmt: skip
    torch.manual_seed(0)
    save_tokenizer(root / "tok", VideoTokenizer(cfg).eval(), "video")
    frames = render_frames(
        "red", "circle", "left", np.random.default_rng(0), ShapesConfig(size=32, frames=24)
    )
    write_video(root / "clip.mp4", frames, 8.0)
    Image.fromarray(frames[0]).save(root / "still.png")
    return {"tok": root / "tok", "mp4": root / "clip.mp4", "png": root / "still.png", "root": root}


def test_video_round_trip_and_chunked_equals_whole(files: dict[str, Path]) -> None:
    from videopoet.media import probe
    from videopoet.tokenizers.video.tools import decode_file, encode_file

    root = files["root"]
    info = encode_file(files["tok"], files["mp4"], root / "whole.npz", chunk_frames=64)
    assert info["frames"] == 21 and info["token_shape"] == [6, 4, 4]  # 24 frames: the most that fit is 21
    encode_file(files["tok"], files["mp4"], root / "chunked.npz", chunk_frames=4)
    whole, chunked = np.load(root / "whole.npz"), np.load(root / "chunked.npz")
    assert np.array_equal(whole["ids"], chunked["ids"]) and int(whole["bits"]) == 6
    out = decode_file(files["tok"], root / "whole.npz", root / "recon.mp4")
    assert out["frames"] == 21
    meta = probe(root / "recon.mp4").video[0]
    assert (meta.height, meta.width, meta.num_frames) == (32, 32, 21)

    part = encode_file(files["tok"], files["mp4"], root / "part.npz", start=1.0, frames=5, size="16x24")
    assert part["token_shape"] == [2, 2, 3]


def test_image_round_trip(files: dict[str, Path]) -> None:
    from videopoet.media import read_image
    from videopoet.tokenizers.video.tools import decode_file, encode_file

    root = files["root"]
    assert encode_file(files["tok"], files["png"], root / "still.npz")["token_shape"] == [1, 4, 4]
    decode_file(files["tok"], root / "still.npz", root / "still_recon.png")
    assert read_image(root / "still_recon.png").shape == (1, 32, 32, 3)
    encode_file(files["tok"], files["mp4"], root / "v.npz")
    with pytest.raises(UserError, match="decode to 21 frames"):
        decode_file(files["tok"], root / "v.npz", root / "v.png")


def test_eval_json(files: dict[str, Path]) -> None:
    from videopoet.tokenizers.video.tools import evaluate_files

    report = evaluate_files(files["tok"], [files["mp4"], files["png"]], frames=9)
    json.dumps(report)
    mean = report["mean"]
    for key in ("psnr", "ssim", "codebook_usage", "perplexity", "bits_per_pixel", "compression_factor",
                "tokens_per_clip", "encode_fps", "decode_fps", "h264_psnr", "h264_ssim", "h264_bits_per_pixel"):  # fmt: skip
        assert math.isfinite(mean[key]), key
    video = report["inputs"][0]
    assert video["tokens_per_clip"] == 3 * 4 * 4 and video["bits_per_pixel"] == pytest.approx(
        48 * 6 / (9 * 32 * 32)
    )
    assert video["compression_factor"] == pytest.approx(24 / video["bits_per_pixel"])
    assert report["inputs"][1]["frames"] == 1


def test_eval_x264_sweep(files: dict[str, Path]) -> None:
    from videopoet.tokenizers.video.tools import evaluate_files

    report = evaluate_files(files["tok"], [files["mp4"], files["png"]], frames=9, x264_sweep=True)
    json.dumps(report)
    for row in report["inputs"]:
        bpp, curve = row["bits_per_pixel"], row["x264_curve"]
        assert "h264_psnr" in row and curve[0]["crf"] == 51  # the matched-rate fields stay
        rates = [p["bpp"] for p in curve]
        assert rates == sorted(rates) and row["x264_lowest_bpp"] == rates[0]
        assert rates[-1] > 2 * bpp  # the sweep went on past twice the tokenizer's rate
        assert row["x264_lowest_psnr"] == curve[0]["psnr"]
        if row["x264_reachable"]:  # interpolated between the two points around the tokenizer's rate
            below = max((p for p in curve if p["bpp"] <= bpp), key=lambda p: p["bpp"])
            above = min((p for p in curve if p["bpp"] >= bpp), key=lambda p: p["bpp"])
            lo, hi = sorted((below["psnr"], above["psnr"]))
            assert lo - 1e-9 <= row["x264_psnr_at_bpp"] <= hi + 1e-9
        else:  # below x264's lowest reachable rate: x264's scores at that rate
            assert rates[0] > bpp
            assert row["x264_psnr_at_bpp"] == row["x264_lowest_psnr"]
            assert row["x264_ssim_at_bpp"] == curve[0]["ssim"]
    mean = report["mean"]
    for key in (
        "x264_psnr_at_bpp",
        "x264_ssim_at_bpp",
        "x264_reachable",
        "x264_lowest_bpp",
        "x264_lowest_psnr",
    ):
        assert math.isfinite(mean[key]), key
    assert "x264_curve" not in mean and 0 <= mean["x264_reachable"] <= 1


def test_eval_x264_sweep_interpolates_when_reachable(
    files: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The tiny clips sit below x264's floor; a curve around the tokenizer's rate checks the other path."""
    from videopoet.tokenizers.video import tools

    def fake_curve(clip: np.ndarray, fps: float, max_bpp: float) -> list[dict[str, float]]:
        bpp = max_bpp / 2  # evaluate_files sweeps to twice the tokenizer's rate
        return [
            {"crf": 40, "bpp": 2 * bpp, "packet_bpp": 3 * bpp, "psnr": 30.0, "ssim": 0.9},
            {"crf": 51, "bpp": bpp / 2, "packet_bpp": 3 * bpp, "psnr": 20.0, "ssim": 0.5},
        ]

    monkeypatch.setattr(tools, "h264_curve", fake_curve)
    row = tools.evaluate_files(files["tok"], [files["mp4"]], frames=9, x264_sweep=True)["inputs"][0]
    assert row["x264_reachable"] is True and row["x264_lowest_psnr"] == 20.0
    assert row["x264_psnr_at_bpp"] == pytest.approx(25.0) and row["x264_ssim_at_bpp"] == pytest.approx(0.7)
    assert row["x264_lowest_bpp"] == pytest.approx(row["bits_per_pixel"] / 2)


def test_bad_input_errors(files: dict[str, Path]) -> None:
    from videopoet.tokenizers.video.tools import decode_file, encode_file, parse_size

    root = files["root"]
    with pytest.raises(VideoShapeError, match="8 frames do not fit 1 \\+ k\\*4.*use 5 or 9"):
        encode_file(files["tok"], files["mp4"], root / "x.npz", frames=8)
    with pytest.raises(
        VideoShapeError, match="height 30 is not a multiple of the spatial factor 8; use 24 or 32"
    ):
        encode_file(files["tok"], files["mp4"], root / "x.npz", size="30x32")
    with pytest.raises(UserError, match="HxW"):
        parse_size("big")
    with pytest.raises(UserError, match="tokens file not found"):
        decode_file(files["tok"], root / "none.npz", root / "x.mp4")
