"""What `videopoet tokenizer {encode,decode,eval} video` do: files in, tokens / reconstructions / scores out.

- Still images (PNG, JPEG, ...) are 1-frame clips; videos are read at the tokenizer's training frame rate
  (config.json `training.fps`, 8 fps when absent) unless `fps` is given.
- Sizes: without `size` a file is taken at its own size, which must fit the tokenizer (sides multiples of
  the spatial factor) or the error says what fits; with `size=(H, W)` frames are resized to cover that
  size and center-cropped (no padding), and `size` itself must fit.
- Frame counts must be 1 + k * temporal_factor; the error names the nearest counts that fit.
- Long videos encode with bounded memory: frames are read and encoded chunk by chunk through the causal
  encoder (`chunk_frames` at a time), which gives the ids of encoding the whole clip at once.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from videopoet.errors import UserError
from videopoet.media import IMAGE_EXTENSIONS
from videopoet.media.codecs import h264_at_rate, h264_curve, h264_reference
from videopoet.metrics.video import psnr, ssim
from videopoet.tokenizers.checkpoint import load_tokenizer, load_tokenizer_config
from videopoet.tokenizers.video.lfq import CodebookUsage
from videopoet.tokenizers.video.model import VideoShapeError, VideoTokenizer

DEFAULT_FPS = 8.0
TOKENS_FORMAT = "videopoet-video-tokens"


def parse_size(text: str | tuple[int, int] | None) -> tuple[int, int] | None:
    """`"128x224"` (H x W) -> (128, 224); tuples pass through; None stays None."""
    if text is None or isinstance(text, tuple):
        return text
    try:
        h, w = (int(v) for v in str(text).lower().split("x"))
    except ValueError:
        raise UserError(f"size must look like HxW (e.g. 128x128), got {text!r}") from None
    if h < 1 or w < 1:
        raise UserError(f"size must be positive, got {text!r}")
    return h, w


def _is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS


def load_video_tokenizer(ckpt: str | Path) -> tuple[VideoTokenizer, float]:
    """The tokenizer of folder `ckpt` and the frame rate it was trained at."""
    model = load_tokenizer(ckpt, "video")
    training = load_tokenizer_config(ckpt, "video").get("training") or {}
    return model, float(training.get("fps") or DEFAULT_FPS)


def _frames_available(path: Path, start: float, fps: float) -> int:
    from videopoet.media import probe

    info = probe(path)
    if not info.video:
        raise UserError(f"{path}: no video stream")
    duration = info.video[0].duration_s or info.duration_s
    if duration is None:
        raise UserError(f"{path}: unknown duration; pass the frame count with --frames")
    return max(0, math.floor((duration - start) * fps + 1e-6))


def _clip_plan(
    model: VideoTokenizer,
    path: Path,
    start: float,
    frames: int | None,
    size: tuple[int, int] | None,
    fps: float,
) -> tuple[int, tuple[int, int]]:
    """(frame count, (H, W)) to read from `path`, checked against the model."""
    from videopoet.media import probe

    if _is_image(path):
        frames = 1
    elif frames is None:  # as many as the video holds from `start`, down to the nearest fitting count
        tf = model.config.temporal_factor
        available = _frames_available(path, start, fps)
        if available < 1:
            raise UserError(f"{path}: no frames after {start:g} s")
        frames = 1 + (available - 1) // tf * tf
    model.check_input(frames, model.config.spatial_factor, model.config.spatial_factor)  # the frame count
    if size is None:
        info = probe(path)
        if not info.video:
            raise UserError(f"{path}: no video stream")
        size = (info.video[0].height, info.video[0].width)
        try:
            model.check_input(frames, *size)
        except VideoShapeError as e:
            raise VideoShapeError(f"{path}: {e} (or pass --size HxW to resize and center-crop)") from None
    else:
        model.check_input(frames, *size)
    return frames, size


def _read(path: Path, start: float, frames: int, fps: float, size: tuple[int, int]) -> np.ndarray:
    from videopoet.media import read_clip, read_image

    if _is_image(path):
        return read_image(path, size)
    return read_clip(path, start, frames, fps, size=size)


def encode_file(
    ckpt: str | Path,
    input: str | Path,
    out_npz: str | Path,
    start: float = 0.0,
    frames: int | None = None,
    size: tuple[int, int] | str | None = None,
    fps: float | None = None,
    chunk_frames: int = 32,
) -> dict[str, Any]:
    """Encode a video (from `start` s, `frames` frames or as many as fit) or an image into `out_npz`.

    The npz holds `ids` (int32 `[t, h, w]`), `frames`, `height`, `width`, `fps`, `bits`, the factors, and the
    source path and start. Returns a summary (shapes, tokens, seconds)."""
    path = Path(input)
    model, train_fps = load_video_tokenizer(ckpt)
    fps = fps or train_fps
    frames, size = _clip_plan(model, path, start, frames, parse_size(size), fps)
    t0 = time.perf_counter()
    if _is_image(path) or frames <= 1 + chunk_frames:
        ids = model.encode_frames(_read(path, start, frames, fps, size))
    else:  # read and encode chunk by chunk: memory bounded by the chunk, ids equal to a whole-clip pass
        from videopoet.media import read_clip

        first, step = model._chunking(chunk_frames, frames)
        bounds, a = [], 0
        while a < frames:
            b = min(frames, a + (first if a == 0 else step))
            bounds.append((a, b))
            a = b

        def chunks():
            for a, b in bounds:
                clip = read_clip(path, start + a / fps, b - a, fps, size=size)
                yield torch.from_numpy(clip)[None].permute(0, 4, 1, 2, 3).float().div_(127.5).sub_(1)

        with torch.no_grad():
            ids = model._encode_stream(chunks())[0].cpu()
    seconds = time.perf_counter() - t0
    out = Path(out_npz)
    out.parent.mkdir(parents=True, exist_ok=True)
    cfg = model.config
    np.savez(
        out,
        format=TOKENS_FORMAT,
        ids=ids.numpy().astype(np.int32),
        frames=frames,
        height=size[0],
        width=size[1],
        fps=fps,
        bits=cfg.bits,
        temporal_factor=cfg.temporal_factor,
        spatial_factor=cfg.spatial_factor,
        source=str(path),
        start=start,
    )
    return {
        "input": str(path),
        "out": str(out),
        "frames": frames,
        "size": list(size),
        "fps": fps,
        "token_shape": list(ids.shape),
        "tokens": int(ids.numel()),
        "seconds": seconds,
    }


def _load_tokens(path: str | Path) -> dict[str, Any]:
    try:
        with np.load(path) as data:
            tokens = {k: data[k] for k in data.files}
    except FileNotFoundError:
        raise UserError(f"tokens file not found: {path}") from None
    except (OSError, ValueError) as e:
        raise UserError(f"{path} is not a tokens .npz: {e}") from None
    if "ids" not in tokens or tokens["ids"].ndim != 3:
        raise UserError(
            f"{path} holds no video ids [t, h, w]; make it with `videopoet tokenizer encode video`"
        )
    return tokens


def decode_file(
    ckpt: str | Path, tokens_npz: str | Path, out_path: str | Path, chunk_frames: int | None = 32
) -> dict[str, Any]:
    """Decode a tokens npz to an MP4 (io.write_video), or to an image (PNG/JPEG) when `out_path` has an
    image suffix and the tokens are one frame."""
    from PIL import Image

    from videopoet.media import write_video

    model, train_fps = load_video_tokenizer(ckpt)
    tokens = _load_tokens(tokens_npz)
    bits = int(tokens.get("bits", model.config.bits))
    if bits != model.config.bits:
        raise UserError(
            f"{tokens_npz} was encoded with {bits}-bit codes, but {ckpt} uses {model.config.bits} bits"
        )
    ids = torch.from_numpy(tokens["ids"].astype(np.int64))
    out = Path(out_path)
    as_image = out.suffix.lower() in IMAGE_EXTENSIONS
    if as_image and ids.shape[0] != 1:
        n = 1 + (ids.shape[0] - 1) * model.config.temporal_factor
        raise UserError(f"{out.name} is an image but the tokens decode to {n} frames; write an .mp4")
    t0 = time.perf_counter()
    frames = model.decode_to_frames(ids, chunk_frames).numpy()
    seconds = time.perf_counter() - t0
    out.parent.mkdir(parents=True, exist_ok=True)
    fps = float(tokens.get("fps", train_fps))
    if as_image:
        Image.fromarray(frames[0]).save(out)
    else:
        write_video(out, frames, fps)
    return {
        "out": str(out),
        "frames": int(frames.shape[0]),
        "size": list(frames.shape[1:3]),
        "fps": fps,
        "seconds": seconds,
    }


def evaluate_files(
    ckpt: str | Path,
    inputs: list[str | Path],
    frames: int | None = 17,
    size: tuple[int, int] | str | None = None,
    start: float = 0.0,
    fps: float | None = None,
    x264_sweep: bool = False,
) -> dict[str, Any]:
    """Score the tokenizer on one clip of each input (images as one frame) against H.264 at the same
    bits per pixel. `frames` None: the model's clip length; `size` None: the model's training size
    (resize to cover, center crop). Returns JSON-able per-file scores and their means.

    Each row has `h264_psnr`, `h264_ssim`, `h264_bits_per_pixel`: x264 (preset medium, whole packets) at
    the best crf whose rate fits the tokenizer's bpp, or crf 51 when none does. With `x264_sweep` each row
    also gets x264's rate-distortion curve (`media.codecs.h264_curve`: preset veryslow, payload bits only,
    from crf 51 down to the first point above twice the tokenizer's bpp) as `x264_curve`, and read off it
    at the tokenizer's bpp (`h264_at_rate`, linear in log bpp): `x264_psnr_at_bpp`, `x264_ssim_at_bpp`,
    `x264_reachable` (False when the tokenizer's bpp is below x264's lowest reachable rate; then the two
    scores are x264's at that lowest rate), `x264_lowest_bpp`, `x264_lowest_psnr`. The mean averages
    those scalars (`x264_reachable` becomes the fraction of inputs where x264 reaches the rate)."""
    model, train_fps = load_video_tokenizer(ckpt)
    fps = fps or train_fps
    cfg = model.config
    size = parse_size(size) or (cfg.height, cfg.width)
    usage = CodebookUsage(cfg.codebook_size)
    rows = []
    for item in inputs:
        path = Path(item)
        n, hw = _clip_plan(model, path, start, frames or cfg.frames, size, fps)
        clip = _read(path, start, n, fps, hw)
        t0 = time.perf_counter()
        ids = model.encode_frames(clip)
        t1 = time.perf_counter()
        recon = model.decode_to_frames(ids).numpy()
        t2 = time.perf_counter()
        usage.update(ids)
        pixels = clip.shape[0] * clip.shape[1] * clip.shape[2]
        bpp = ids.numel() * cfg.bits / pixels
        h_psnr, h_ssim, h_bpp = h264_reference(clip, fps, bpp)
        rows.append(
            {
                "input": str(path),
                "frames": int(clip.shape[0]),
                "size": [int(clip.shape[1]), int(clip.shape[2])],
                "psnr": psnr(clip, recon),
                "ssim": ssim(clip, recon),
                "tokens_per_clip": int(ids.numel()),
                "bits_per_pixel": bpp,
                "compression_factor": 24.0 / bpp,
                "encode_fps": clip.shape[0] / max(t1 - t0, 1e-9),
                "decode_fps": clip.shape[0] / max(t2 - t1, 1e-9),
                "h264_psnr": h_psnr,
                "h264_ssim": h_ssim,
                "h264_bits_per_pixel": h_bpp,
            }
        )
        if x264_sweep:
            curve = h264_curve(clip, fps, max_bpp=2 * bpp)
            at = h264_at_rate(curve, bpp)
            rows[-1].update(
                {
                    "x264_psnr_at_bpp": at["psnr"],
                    "x264_ssim_at_bpp": at["ssim"],
                    "x264_reachable": at["reachable"],
                    "x264_lowest_bpp": at["lowest"]["bpp"],
                    "x264_lowest_psnr": at["lowest"]["psnr"],
                    "x264_curve": curve,
                }
            )
    if not rows:
        raise UserError("no inputs to evaluate")
    keys = [k for k in rows[0] if k not in ("input", "frames", "size", "x264_curve")]
    mean = {k: float(np.mean([r[k] for r in rows])) for k in keys}
    stats = usage.result()
    mean.update(
        {"codebook_usage": stats["usage"], "used_codes": stats["used"], "perplexity": stats["perplexity"]}
    )
    return {
        "ckpt": str(ckpt),
        "codebook_size": cfg.codebook_size,
        "bits": cfg.bits,
        "fps": fps,
        "mean": mean,
        "inputs": rows,
    }
