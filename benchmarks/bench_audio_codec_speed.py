"""Encode and decode real-time factors of the audio codec presets (how many seconds of audio per second).

Times `AudioTokenizer.encode` and `.decode` on a clip of `--seconds` of audio (a tone plus noise): median
and best of `--runs` runs after one warm-up, in fp32 and (where the hardware has it) under bf16 autocast,
the precisions interleaved run by run, with torch's default thread count (`--threads` to change it).
Models are randomly initialised: speed does not depend on the weights. Other processes on the machine
slow it down (the best run is the least disturbed one); the load average is recorded.

    .venv/bin/python benchmarks/bench_audio_codec_speed.py --out audio_speed.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from videopoet.precision import cpu_has_bf16  # noqa: E402
from videopoet.tokenizers.audio.model import PRESETS, AudioTokenizer  # noqa: E402


def clip(seconds: float, sample_rate: int) -> torch.Tensor:
    t = torch.arange(int(seconds * sample_rate)) / sample_rate
    g = torch.Generator().manual_seed(0)
    wav = 0.4 * torch.sin(2 * torch.pi * 440 * t) + 0.05 * torch.randn(t.shape, generator=g)
    return wav[None, None]


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def load() -> float:
    try:
        return os.getloadavg()[0]
    except OSError:
        return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=["tiny", "videopoet"], choices=sorted(PRESETS))
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--precisions", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16"])
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    precisions = [p for p in args.precisions if p == "fp32" or device.type == "cuda" or cpu_has_bf16()]
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    results = []
    print(
        f"{args.seconds:g} s of audio, {torch.get_num_threads()} threads, {device}; real-time factors, "
        f"median (best) of {args.runs} runs, precisions interleaved"
    )
    header = (
        f"{'preset':<10} {'precision':<9} {'params':>7} {'kbps':>5} {'encode xRT':>15} {'decode xRT':>15} "
        f"{'enc+dec xRT':>15}"
    )
    print(header)
    print("-" * len(header))
    for name in args.presets:
        config = PRESETS[name]
        model = AudioTokenizer(config).to(device).eval()
        params = sum(p.numel() for p in model.parameters())
        wav = clip(args.seconds, config.sample_rate).to(device)
        times: dict[str, dict[str, list[float]]] = {p: {"enc": [], "dec": []} for p in precisions}
        load_before = load()
        with torch.inference_mode():
            for run in range(args.runs + 1):  # run 0 warms up
                for precision in precisions:  # interleaved, so load from other processes hits both alike
                    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
                        t_enc = timed(lambda m=model, w=wav: (m.encode(w), sync()))
                        codes = model.encode(wav)
                        t_dec = timed(lambda m=model, c=codes: (m.decode(c), sync()))
                    if run:
                        times[precision]["enc"].append(t_enc)
                        times[precision]["dec"].append(t_dec)
        load_after = load()
        for precision in precisions:
            enc, dec = times[precision]["enc"], times[precision]["dec"]
            both = [a + b for a, b in zip(enc, dec)]
            row = {
                "preset": name,
                "precision": precision,
                "params": params,
                "sample_rate": config.sample_rate,
                "hop": config.hop,
                "frames_per_s": config.frame_rate,
                "levels": config.levels,
                "codebook_size": config.codebook_size,
                "bitrate_kbps": config.bitrate_kbps(),
                "causal": config.causal,
                "seconds": args.seconds,
                "runs": args.runs,
                "threads": torch.get_num_threads(),
                "device": str(device),
                "encode_s": enc,
                "decode_s": dec,
                "encode_xrt": args.seconds / statistics.median(enc),
                "decode_xrt": args.seconds / statistics.median(dec),
                "encode_decode_xrt": args.seconds / statistics.median(both),
                "encode_decode_xrt_best": args.seconds / min(both),
                "loadavg_1min": [load_before, load_after],
            }
            results.append(row)

            def cell(xs: list[float]) -> str:
                return f"{args.seconds / statistics.median(xs):.0f}x ({args.seconds / min(xs):.0f}x)"

            print(
                f"{name:<10} {precision:<9} {params / 1e6:>6.2f}M {row['bitrate_kbps']:>5.1f} {cell(enc):>15} "
                f"{cell(dec):>15} {cell(both):>15}",
                flush=True,
            )
    print(f"load average (1 min) during the run: {load_before:.2f} -> {load():.2f} on {os.cpu_count()} CPUs")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2) + "\n")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
