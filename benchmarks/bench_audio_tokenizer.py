"""Audio tokenizer quality benchmark: what a short CPU training of the `tiny` codec reaches.

    python benchmarks/bench_audio_tokenizer.py [--minutes 10] [--media FOLDER_OF_WAV_AND_FLAC] [--seconds 10]
        [--set loss.quantizer_start=100 ...]

Trains the `audio_tokenizer` section of configs/tiny.yaml (built-in tiny values when the file has none) on
shapes for about `--minutes` (the step count comes from timed calibration steps; on a busy machine give
`--steps` instead; `--set KEY=VALUE` overrides fields of the section), then reports, per
held-out shapes clip, the pitch error of the reconstruction (target: within 2%) and its SI-SDR (target:
>= 10 dB), and on the speech and music of `--media` (first `--seconds` of each) SI-SDR and mel distance
next to Opus at the same bitrate (Opus cannot go below 6 kbps; the rate used is reported). Prints a table
and writes JSON (`--json`, default runs/bench/audio_tokenizer_quality.json). Speed: bench_audio_codec_speed.py.
"""

from __future__ import annotations

import argparse
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
from videopoet.data.sources import pitch_error, training_source  # noqa: E402
from videopoet.data.synthetic import HELDOUT_COMBOS, PITCH_HZ, PITCH_TOLERANCE, ShapesConfig, render_audio  # noqa: E402
from videopoet.metrics.audio import si_sdr  # noqa: E402
from videopoet.tokenizers.audio.tools import evaluate_files, load_audio_tokenizer  # noqa: E402
from videopoet.tokenizers.audio.train import AudioTokenizerTrainingConfig  # noqa: E402
from videopoet.tokenizers.budget import loop_seconds_per_step  # noqa: E402
from videopoet.tokenizers.registry import get_family  # noqa: E402

FAMILY = get_family("audio")


def tiny_config(steps: int | None = None, overrides: list[str] | None = None) -> AudioTokenizerTrainingConfig:
    """The `audio_tokenizer` section of configs/tiny.yaml with `overrides` (KEY=VALUE), optionally with
    another step count."""
    extra = [f"train.steps={steps}"] if steps is not None else []
    return load_section("audio_tokenizer", ROOT / "configs" / "tiny.yaml", [*(overrides or []), *extra])


def calibrate(config: AudioTokenizerTrainingConfig, steps: int = 8) -> float:
    """Seconds per step of a short real training run, measured by the loop over its last steps (start-up
    and the first, k-means step excluded), plus 10% for validation and saving. The warm-ups are switched off
    (quantizer and mel loss on from the start), so this is the cost of a step after them."""
    config.loss.quantizer_start = config.loss.mel_start = 0
    solver = FAMILY.build_solver(config, training_source(FAMILY, "shapes", config))
    return 1.1 * loop_seconds_per_step(solver, config.train, steps)


def heldout(ckpt: Path) -> list[dict[str, Any]]:
    model = load_audio_tokenizer(ckpt)
    sr, rows = model.sample_rate, []
    for combo in HELDOUT_COMBOS:
        wav = render_audio(combo[1], ShapesConfig(sample_rate=sr))
        n = model.samples_for(model.frames_for(wav.size))
        recon = model.decode_long(model.encode_long(wav[:n]), num_samples=n)
        err = pitch_error(recon, PITCH_HZ[combo[1]], sr)
        rows.append({"clip": "-".join(combo), "pitch_hz": PITCH_HZ[combo[1]], "pitch_error": err,
                     "pitch_ok": err <= PITCH_TOLERANCE, "si_sdr": si_sdr(wav[:n], recon)})  # fmt: skip
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=10.0, help="training time budget")
    ap.add_argument("--media", type=Path, default=None, help="folder of real speech/music files to score (optional)")
    ap.add_argument("--steps", type=int, help="train this many steps instead of calibrating for --minutes")
    ap.add_argument("--seconds", type=float, default=10.0, help="seconds of each media file scored")
    ap.add_argument("--out", type=Path, help="training folder (default: a temporary one)")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="override a field of the audio_tokenizer section (repeatable), e.g. loss.quantizer_start=100")
    ap.add_argument("--json", type=Path, default=ROOT / "runs" / "bench" / "audio_tokenizer_quality.json")
    args = ap.parse_args()

    torch.set_num_threads(max(1, torch.get_num_threads()))
    per_step = None
    if args.steps:
        steps = args.steps
    else:
        per_step = calibrate(tiny_config(overrides=args.overrides))
        steps = max(10, int(args.minutes * 60 / per_step))
        print(f"calibration: {per_step:.2f} s/step -> {steps} steps for {args.minutes:g} min", flush=True)
    config = tiny_config(steps, args.overrides)
    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or Path(tmp) / "audio_tok"
        t0 = time.perf_counter()
        FAMILY.train(config, training_source(FAMILY, "shapes", config), out)
        train_s = time.perf_counter() - t0
        clips = heldout(out)
        media_files = sorted(p for p in args.media.glob("*") if p.suffix.lower() in (".wav", ".flac")) \
            if args.media is not None and args.media.is_dir() else []  # fmt: skip
        media = evaluate_files(out, media_files, seconds=args.seconds) if media_files else None

    print(f"\ntiny audio tokenizer, {steps} steps in {train_s / 60:.1f} min on shapes")
    print(f"{'held-out clip':<24} {'pitch Hz':>8} {'pitch err':>9} {'ok':>3} {'SI-SDR dB':>9}")
    for r in clips:
        print(f"{r['clip']:<24} {r['pitch_hz']:>8.0f} {r['pitch_error']:>9.2%} {'y' if r['pitch_ok'] else 'n':>3} "
              f"{r['si_sdr']:>9.2f}")  # fmt: skip
    summary = {"pitch_ok_all": all(r["pitch_ok"] for r in clips), "min_si_sdr": min(r["si_sdr"] for r in clips)}
    print(f"all pitches within 2%: {summary['pitch_ok_all']}; min SI-SDR {summary['min_si_sdr']:.2f} dB (target 10)")
    if media:
        print(f"\n{'media file':<28} {'SI-SDR':>7} {'mel':>6} | {'Opus SI-SDR':>11} {'mel':>6}  "
              f"(codec {media['bitrate_kbps']:.2f} kbps, Opus {media['opus_bitrate_kbps']:g} kbps)")
        for f in media["files"]:
            print(f"{Path(f['input']).name:<28} {f['si_sdr']:>7.2f} {f['mel_distance']:>6.3f} | "
                  f"{f['opus_si_sdr']:>11.2f} {f['opus_mel_distance']:>6.3f}")
    result = {"minutes": args.minutes, "steps": steps, "train_seconds": train_s, "seconds_per_step": per_step,
              "overrides": args.overrides,
              "heldout": clips, **summary, "media": media}  # fmt: skip
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2, default=float))
    print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
