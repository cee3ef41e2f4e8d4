"""Video tokenizer benchmarks: encode/decode throughput, and the quality a short CPU training reaches.

    python benchmarks/bench_video_tokenizer.py speed [--presets tiny videopoet] [--repeats 3]
    python benchmarks/bench_video_tokenizer.py quality [--minutes 10] [--media FOLDER_OF_VIDEOS]

`speed`: frames/s of `encode_frames` and `decode_to_frames` on one 17-frame clip at each preset's size,
untrained weights (speed does not depend on them), fp32 and bf16 autocast, on the CPU and on CUDA when
available. `quality`: trains the `video_tokenizer` section of configs/tiny.yaml (built-in tiny values when
the file has none) on shapes for about `--minutes` (the step count is set from timed steps with and without the discriminator),
then reports held-out shapes PSNR/SSIM and, on the clips of `--media`, PSNR/SSIM against H.264 at the
same bits per pixel. Each prints a table and writes JSON (`--json`, default runs/bench/...).
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from videopoet.config import load_section  # noqa: E402
from videopoet.data.sources import training_source  # noqa: E402
from videopoet.precision import cpu_has_bf16  # noqa: E402
from videopoet.tokenizers.budget import loop_seconds_per_step  # noqa: E402
from videopoet.tokenizers.registry import get_family  # noqa: E402
from videopoet.tokenizers.video.model import PRESETS, VideoTokenizer  # noqa: E402
from videopoet.tokenizers.video.train import VideoTokenizerTrainingConfig  # noqa: E402

FAMILY = get_family("video")


def _time(fn, repeats: int) -> float:
    fn()  # warm-up
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t)
    return best


def bench_speed(presets: list[str], repeats: int, devices: list[str] | None = None) -> list[dict[str, Any]]:
    """Encode and decode frames/s per preset, device and precision (and the peak GPU memory on CUDA)."""
    rows = []
    devices = [d for d in devices or ["cpu", "cuda"] if d == "cpu" or torch.cuda.is_available()]
    for name in presets:
        cfg = PRESETS[name]
        torch.manual_seed(0)
        model = VideoTokenizer(cfg).eval()
        frames = torch.randint(0, 256, (1, cfg.frames, cfg.height, cfg.width, 3), dtype=torch.uint8)
        for device in devices:
            model.to(device)
            precisions = ["fp32"] + (["bf16"] if device == "cuda" or cpu_has_bf16() else [])
            for precision in precisions:
                amp = dict(device_type=device, dtype=torch.bfloat16, enabled=precision == "bf16")
                if device == "cuda":
                    torch.cuda.reset_peak_memory_stats()
                with torch.autocast(**amp):
                    ids = model.encode_frames(frames)
                    enc = _time(lambda m=model, f=frames: m.encode_frames(f), repeats)
                    dec = _time(lambda m=model, i=ids: m.decode_to_frames(i), repeats)
                rows.append({
                    "preset": name, "device": device, "precision": precision,
                    "clip": f"{cfg.frames}x{cfg.height}x{cfg.width}", "tokens": int(ids.numel()),
                    "params_M": model.num_parameters() / 1e6,
                    "encode_fps": cfg.frames / enc, "decode_fps": cfg.frames / dec,
                    "peak_gpu_memory_gib": torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else None,
                })  # fmt: skip
                print(_fmt_row(rows[-1]), flush=True)
    return rows


def _fmt_row(row: dict[str, Any]) -> str:
    return "  ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items())


def _tiny_config() -> VideoTokenizerTrainingConfig:
    return load_section("video_tokenizer", ROOT / "configs" / "tiny.yaml")


def _seconds_per_step(config: VideoTokenizerTrainingConfig, adversarial: bool, steps: int = 30) -> float:
    """Seconds per step of a short real training run as its loop measures it (optimizer steps, EMA and
    data included; start-up excluded): with the discriminator from the first step, or without it."""
    config = copy.deepcopy(config)
    config.train.optim.warmup_steps = 1
    config.loss.disc_start = 0 if adversarial else steps + 1
    config.val_clips = 1
    solver = FAMILY.build_solver(config, training_source(FAMILY, "shapes", config))
    return 1.05 * loop_seconds_per_step(solver, config.train, steps)  # + the final validation and save


def _planned_steps(config: VideoTokenizerTrainingConfig, minutes: float) -> tuple[int, float]:
    """Steps that fit in `minutes` when the adversarial share of the run stays the YAML's
    (`disc_start / steps`), and the mean seconds per step that assumes."""
    plain, adversarial = _seconds_per_step(config, False), _seconds_per_step(config, True)
    gan_share = max(0.0, 1 - config.loss.disc_start / config.train.steps) if config.loss.gan_weight > 0 else 0.0
    per_step = (1 - gan_share) * plain + gan_share * adversarial
    return max(10, int(minutes * 60 / per_step)), per_step


def bench_quality(minutes: float, media: Path | None, out_dir: Path | None) -> dict[str, Any]:
    from videopoet.media import NotEnoughFramesError
    from videopoet.tokenizers.video.tools import _frames_available, evaluate_files

    config = _tiny_config()
    planned = config.train.steps
    steps, per_step = _planned_steps(config, minutes)
    scale = steps / planned  # keep the YAML's schedule proportions at the new length
    config.train.steps = steps
    config.train.optim.warmup_steps = max(1, int(config.train.optim.warmup_steps * scale))
    config.loss.disc_start = int(config.loss.disc_start * scale)
    config.loss.entropy_anneal_steps = int(config.loss.entropy_anneal_steps * scale)
    config.train.val_every = config.train.save_every = config.train.sample_every = steps
    config.val_clips = 16
    print(f"quality: {per_step:.2f} s/step -> {steps} steps in ~{minutes:g} min "
          f"(disc_start {config.loss.disc_start})", flush=True)  # fmt: skip
    run = Path(out_dir) if out_dir else Path(tempfile.mkdtemp(prefix="bench_video_tok_"))
    t = time.perf_counter()
    result = FAMILY.train(config, training_source(FAMILY, "shapes", config), run)
    train_s = time.perf_counter() - t
    rows = []
    files = (
        sorted(p for p in media.iterdir() if p.is_file() and p.suffix.lower() != ".md")
        if media is not None and media.is_dir()
        else []
    )
    for path in files:
        size = (config.model.height, config.model.width)
        try:
            try:
                report = evaluate_files(run, [path], frames=config.model.frames, size=size)
            except NotEnoughFramesError:  # a short file: the most frames that fit 1 + k * t_factor
                tf = config.model.temporal_factor
                n = _frames_available(path, 0.0, config.fps)
                report = evaluate_files(run, [path], frames=1 + (max(1, n) - 1) // tf * tf, size=size)
            rows.append(report["inputs"][0])
        except Exception as e:  # unreadable: say so, keep going
            rows.append({"input": str(path), "error": str(e)})
        print(_fmt_row(rows[-1]), flush=True)
    return {
        "minutes": minutes,
        "steps": steps,
        "train_seconds": train_s,
        "seconds_per_step": per_step,
        "heldout_shapes": result["val"],
        "media": rows,
        "run": str(run),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("speed")
    s.add_argument("--presets", nargs="+", default=["tiny", "videopoet"], choices=list(PRESETS))
    s.add_argument("--repeats", type=int, default=3)
    s.add_argument("--devices", nargs="+", default=["cpu", "cuda"], choices=["cpu", "cuda"],
                   help="where to measure (cuda only where present)")
    s.add_argument("--json", type=Path, default=Path("runs/bench/video_tokenizer_speed.json"))
    q = sub.add_parser("quality")
    q.add_argument("--minutes", type=float, default=10.0)
    q.add_argument("--media", type=Path, default=None, help="a folder of real videos to score against H.264 (optional)")
    q.add_argument("--out", type=Path, default=None, help="training run folder (default: a temporary one)")
    q.add_argument("--json", type=Path, default=Path("runs/bench/video_tokenizer_quality.json"))
    args = parser.parse_args()
    if args.cmd == "speed":
        result: Any = {
            "cpu_threads": torch.get_num_threads(),
            "rows": bench_speed(args.presets, args.repeats, args.devices),
        }
        print(
            f"\n{'preset':<10} {'device':<6} {'prec':<5} {'clip':<11} {'tokens':>6} {'enc f/s':>9} {'dec f/s':>9}"
        )
        for r in result["rows"]:
            print(f"{r['preset']:<10} {r['device']:<6} {r['precision']:<5} {r['clip']:<11} {r['tokens']:>6} "
                  f"{r['encode_fps']:>9.2f} {r['decode_fps']:>9.2f}")  # fmt: skip
    else:
        result = bench_quality(args.minutes, args.media, args.out)
        val = result["heldout_shapes"]
        print(f"\nheld-out shapes after {result['steps']} steps ({result['train_seconds']:.0f} s): "
              f"PSNR {val.get('psnr', float('nan')):.2f} dB, SSIM {val.get('ssim', float('nan')):.3f}, "
              f"codebook usage {val.get('codebook_usage', float('nan')):.3f}")  # fmt: skip
        print(
            f"{'media clip':<24} {'PSNR':>6} {'SSIM':>6} {'bpp':>6} | {'H264 PSNR':>9} {'SSIM':>6} {'bpp':>6}"
        )
        for r in result["media"]:
            name = Path(r["input"]).name[:24]
            if "error" in r:
                print(f"{name:<24} error: {r['error'][:80]}")
                continue
            print(f"{name + ' (' + str(r['frames']) + 'f)':<24} {r['psnr']:>6.2f} {r['ssim']:>6.3f} {r['bits_per_pixel']:>6.3f} | "
                  f"{r['h264_psnr']:>9.2f} {r['h264_ssim']:>6.3f} {r['h264_bits_per_pixel']:>6.3f}")  # fmt: skip
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
