"""Pretokenize speed: clips/s of `videopoet tokenize` with the tiny tokenizers of configs/tiny.yaml.

    python benchmarks/bench_pretokenize.py [--clips 64] [--batch-size 8] [--num-workers 0 1] [--media FOLDER]

Writes a shapes set (and ingests `--media` when given), saves randomly initialised video and audio
tokenizers built from configs/tiny.yaml (speed does not depend on the weights) and a text tokenizer
trained on the captions, then times `pretokenize` into a fresh folder for each worker count: decoding in
DataLoader workers, video + audio + text tokenization and writing the records. One untimed warm-up run
first. Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from videopoet.config import load_section  # noqa: E402
from videopoet.data.ingest import IngestConfig, ingest, load_clip_index  # noqa: E402
from videopoet.data.pretokenize import pretokenize  # noqa: E402
from videopoet.data.shapes_dataset import write_shapes_dataset  # noqa: E402
from videopoet.tokenizers.audio.model import AudioTokenizer  # noqa: E402
from videopoet.tokenizers.checkpoint import save_tokenizer  # noqa: E402
from videopoet.tokenizers.text import train_text_tokenizer  # noqa: E402
from videopoet.tokenizers.video.model import VideoTokenizer  # noqa: E402

CONFIG = ROOT / "configs" / "tiny.yaml"


def make_tokenizers(work: Path, captions: Path) -> dict[str, Path]:
    torch.manual_seed(0)
    video = load_section("video_tokenizer", CONFIG).model
    audio = load_section("audio_tokenizer", CONFIG).model
    save_tokenizer(work / "video", VideoTokenizer(video).eval(), "video")
    save_tokenizer(work / "audio", AudioTokenizer(audio).eval(), "audio")
    train_text_tokenizer(captions, work / "text", load_section("text_tokenizer", CONFIG))
    return {"video": work / "video", "audio": work / "audio", "text": work / "text"}


def run_case(name: str, index: Path, toks: dict[str, Path], out: Path, batch_size: int, workers: int) -> dict:
    t0 = time.perf_counter()
    report = pretokenize(index, out, toks["video"], toks["text"], toks["audio"], batch_size=batch_size,
                         num_workers=workers, progress=False)
    seconds = time.perf_counter() - t0
    return {
        "case": name, "num_workers": workers, "batch_size": batch_size, "clips": report["clips"],
        "seconds": round(seconds, 2), "clips_per_s": round(report["clips"] / seconds, 2),
        "frames_per_s": round(report["clips"] * load_section("video_tokenizer", CONFIG).model.frames / seconds, 1),
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=64, help="shapes clips")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--num-workers", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--media", type=Path, default=None, help="a folder of real media files (optional)")
    parser.add_argument("--out", type=Path, default=Path("runs/bench/pretokenize.json"))
    args = parser.parse_args()

    model = load_section("video_tokenizer", CONFIG).model
    size = (model.height, model.width)
    results = []
    with tempfile.TemporaryDirectory(prefix="bench_pretok_") as tmp:
        work = Path(tmp)
        shapes = write_shapes_dataset(work / "shapes", num_clips=args.clips, seed=0, progress=False)
        toks = make_tokenizers(work, shapes / "metadata.jsonl")
        sources = [("shapes", shapes)] + ([("media", args.media)] if args.media is not None else [])
        cases = []
        for name, src in sources:
            ingest(src, work / f"idx_{name}", IngestConfig(size=size, frames=model.frames), progress=False)
            cases.append((name, work / f"idx_{name}"))
        warm = load_clip_index(cases[0][1])
        print(f"{len(warm)} shapes clips of {model.frames}x{size[0]}x{size[1]}; torch threads {torch.get_num_threads()}", flush=True)
        run_case("warmup", cases[0][1], toks, work / "tok_warmup", args.batch_size, 0)
        for name, index in cases:
            for workers in args.num_workers:
                results.append(run_case(name, index, toks, work / f"tok_{name}_{workers}", args.batch_size, workers))
                print(json.dumps(results[-1]), flush=True)

    header = list(results[0])
    widths = [max(len(h), *(len(str(r[h])) for r in results)) for h in header]
    print("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
    for r in results:
        print("  ".join(str(r[h]).ljust(w) for h, w in zip(header, widths, strict=True)))
    meta = {"cpu_count": os.cpu_count(), "platform": platform.platform(), "load_avg": os.getloadavg()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"benchmark": "pretokenize", **meta, "results": results}, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
