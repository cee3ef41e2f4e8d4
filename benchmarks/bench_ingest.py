"""Ingest speed: files/s and clips/s on the real media folder and on a generated shapes set.

    python benchmarks/bench_ingest.py [--media FOLDER_OF_VIDEOS] [--shapes 48] [--num-proc 1 2] [--out F.json]

Each case ingests into a fresh folder (every file probed, cut and spot-decoded; the median of --repeat
runs after one untimed warm-up, so imports and a cold page cache do not count), then once more into the
last folder (a re-run that finds nothing new). Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

from videopoet.data.ingest import IngestConfig, ingest
from videopoet.data.shapes_dataset import write_shapes_dataset

ROOT = Path(__file__).resolve().parents[1]


def run_case(name: str, src: Path, config: IngestConfig, work: Path, repeat: int) -> dict:
    times = []
    for i in range(repeat):
        out = work / f"{name}_p{config.num_proc}_{i}"
        t0 = time.perf_counter()
        report = ingest(src, out, config, progress=False)
        times.append(time.perf_counter() - t0)
    cold = statistics.median(times)
    t0 = time.perf_counter()
    again = ingest(src, out, config, progress=False)
    warm = time.perf_counter() - t0
    assert again["files_processed"] == 0 and again["clips"] == report["clips"]
    return {
        "case": name,
        "num_proc": config.num_proc,
        "files": report["files_seen"],
        "ingested": report["files_ingested"],
        "skipped": report["files_skipped"],
        "clips": report["clips"],
        "seconds": round(cold, 3),
        "files_per_s": round(report["files_seen"] / cold, 2),
        "clips_per_s": round(report["clips"] / cold, 2),
        "rerun_seconds": round(warm, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--media", type=Path, default=None, help="a folder of real media files (optional)")
    parser.add_argument("--shapes", type=int, default=200, help="clips in the generated shapes set")
    parser.add_argument("--num-proc", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per case (median)")
    parser.add_argument("--out", type=Path, default=None, help="JSON results file")
    args = parser.parse_args()

    results = []
    with tempfile.TemporaryDirectory(prefix="bench_ingest_") as tmp:
        work = Path(tmp)
        shapes = write_shapes_dataset(work / "shapes", num_clips=args.shapes, seed=0, progress=False)
        cases = [("shapes", shapes, {})]
        if args.media is not None and args.media.is_dir():
            cases = [("media", args.media, {}), ("media_1s_clips", args.media, {"frames": 9})] + cases
        else:
            print(f"(no media folder at {args.media}; shapes only)")
        ingest(shapes, work / "warmup", progress=False)
        for name, src, extra in cases:
            for n in args.num_proc:
                results.append(run_case(name, src, IngestConfig(num_proc=n, **extra), work, args.repeat))

    header = [
        "case",
        "num_proc",
        "files",
        "ingested",
        "skipped",
        "clips",
        "seconds",
        "files_per_s",
        "clips_per_s",
        "rerun_seconds",
    ]
    widths = [max(len(h), *(len(str(r[h])) for r in results)) for h in header]
    print("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
    for r in results:
        print("  ".join(str(r[h]).ljust(w) for h, w in zip(header, widths, strict=True)))
    meta = {"cpu_count": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()}
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"benchmark": "ingest", **meta, "results": results}, indent=2) + "\n")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
