"""Seconds per clip for the AR and MaskGIT samplers at VideoPoet's layout, and AR tokens/s against
`transformers`' own `generate` on the same model.

The layout is text-to-video: a text prefix, then 1280 video tokens (5 x 16 x 16 latents). Models are
randomly initialised (speed does not depend on the weights).

    .venv/bin/python benchmarks/bench_sampling.py --presets tiny 300m --out sampling.json

On a GPU each row also gives the peak GPU memory of the preset's three runs; `--out` is rewritten after
every preset, so a run stopped by a time limit keeps the presets it finished.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from videopoet.llm.model import PRESETS, build_model  # noqa: E402
from videopoet.llm.sampling import (  # noqa: E402
    SamplingConfig,
    sample_autoregressive,
    sample_maskgit,
)
from videopoet.sequence import OutputBlock, OutputLayout  # noqa: E402
from videopoet.vocab import SharedVocab  # noqa: E402

# the demo's vocabulary for the tiny model, the paper's for the others
VOCABS = {
    "tiny": SharedVocab(text_size=512, video_bits=10, audio_levels=2, audio_codebook_size=256),
    "paper": SharedVocab(text_size=32000, video_bits=18, audio_levels=4, audio_codebook_size=1024),
}
VOCAB = VOCABS["paper"]


def layout(tokens: int) -> OutputLayout:
    r = VOCAB.video_range
    block = OutputBlock(VOCAB.token_id("<bov_o>"), VOCAB.token_id("<eov_o>"), torch.full((tokens,), r.start), torch.full((tokens,), r.stop))
    return OutputLayout([block], VOCAB.token_id("<eos>"))


def prefix(text_tokens: int) -> torch.Tensor:
    text = torch.randint(VOCAB.text_range.start, VOCAB.text_range.stop, (text_tokens,))
    head = [VOCAB.token_id("<bos>"), VOCAB.task_id("text_to_video"), *VOCAB.resolution_ids(128, 128), VOCAB.token_id("<bot_i>")]
    return torch.cat([torch.tensor(head), text, torch.tensor([VOCAB.token_id("<eot_i>")])])


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main() -> None:
    global VOCAB
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=["tiny", "300m"], choices=sorted(PRESETS))
    parser.add_argument("--tokens", type=int, default=1280)
    parser.add_argument("--text-tokens", type=int, default=32)
    parser.add_argument("--maskgit-steps", type=int, default=16)
    parser.add_argument("--dtype", choices=["fp32", "bf16"], default="bf16")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dtype = torch.bfloat16 if args.dtype == "bf16" else torch.float32
    results = []
    for name in args.presets:
        VOCAB = VOCABS["tiny" if name == "tiny" else "paper"]
        pad, mask = VOCAB.token_id("<pad>"), VOCAB.token_id("<mask>")
        torch.manual_seed(0)
        if device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        model = build_model(PRESETS[name], VOCAB).to(device, dtype).eval()
        p = [prefix(args.text_tokens)]
        lay = layout(args.tokens)
        ar = timed(lambda: sample_autoregressive(model, p, lay, SamplingConfig(temperature=1.0, top_k=100), pad))
        mg = timed(lambda: sample_maskgit(model, p, lay, SamplingConfig(temperature=1.0, top_k=100, steps=args.maskgit_steps), pad, mask))
        ids = torch.cat([p[0], torch.tensor([lay.blocks[0].open_id])])[None].to(device)
        with torch.no_grad():
            hf = timed(lambda: model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=args.tokens,
                                             min_new_tokens=args.tokens, do_sample=True, top_k=100, pad_token_id=pad))
        row = {
            "preset": name,
            "device": f"{device.type} ({os.cpu_count()} threads)" if device.type == "cpu" else torch.cuda.get_device_name(),
            "dtype": args.dtype,
            "vocab": VOCAB.padded_size(),
            "tokens": args.tokens,
            "ar_s_per_clip": ar,
            "maskgit_s_per_clip": mg,
            "maskgit_speedup": ar / mg,
            "ar_tokens_per_s": args.tokens / ar,
            "hf_generate_tokens_per_s": args.tokens / hf,
            "peak_gpu_memory_gib": torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else None,
        }
        results.append(row)
        print(" | ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()), flush=True)
        if args.out:
            args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
