"""LFQ speed and memory at 2^18 codes: forward + backward with the entropy loss on 4 x 1280 tokens.

    python benchmarks/bench_lfq.py [--bits 18] [--group-bits 9 6] [--threads 1 2] [--iters 30] [--out F.json]

Every case runs in a fresh Python subprocess. Time: the median (and 90th percentile) of --iters timed
iterations after --warmup untimed ones; an iteration is LFQ forward (quantize, ids, commitment and the
factorized entropy loss, usage stats) plus backward of the weighted loss through a [B, K, 5, 16, 16]
latent. Memory: the growth of the process's peak resident set size (`ru_maxrss`) from just before the
first iteration (torch imported, inputs made) to the end, i.e. everything the LFQ step ever held at once
beyond what the process already had; tracemalloc would not see torch's allocations.

If `vector_quantize_pytorch` is importable, its LFQ runs the same way side by side, under a 16 GB address
space limit so it fails instead of taking the machine down. Targets: at most 50 ms and 256 MB.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

TARGET_MS, TARGET_MB = 50.0, 256.0


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _limit_address_space() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (16 * 2**30, 16 * 2**30))


def child(args: argparse.Namespace) -> dict:
    """One case, in this (fresh) process."""
    import torch

    torch.set_num_threads(args.threads[0])
    torch.manual_seed(0)
    shape = (args.batch, args.bits, *args.latent)
    if args.impl == "videopoet":
        from videopoet.tokenizers.video.lfq import LFQ, LFQConfig

        lfq = LFQ(LFQConfig(bits=args.bits, group_bits=args.group_bits[0])).train()

        def step(z: torch.Tensor) -> None:
            lfq(z).loss.backward()
    else:
        from vector_quantize_pytorch import LFQ as ReferenceLFQ

        lfq = ReferenceLFQ(
            dim=args.bits, codebook_size=2**args.bits, entropy_loss_weight=0.1, diversity_gamma=1.0
        )

        def step(z: torch.Tensor) -> None:
            _, _, aux_loss = lfq(z.flatten(2).transpose(1, 2))
            aux_loss.backward()

    z = torch.randn(*shape, requires_grad=True)
    rss_before, maxrss_before = _rss_mb(), _maxrss_mb()
    times = []
    for i in range(args.warmup + args.iters):
        z.grad = None
        t0 = time.perf_counter()
        step(z)
        if i >= args.warmup:
            times.append((time.perf_counter() - t0) * 1000)
    times.sort()
    return {
        "median_ms": statistics.median(times),
        "p90_ms": times[min(len(times) - 1, int(0.9 * len(times)))],
        "extra_peak_mb": max(0.0, _maxrss_mb() - max(rss_before, maxrss_before)),
        "extra_peak_mb_vs_current_rss": _maxrss_mb() - rss_before,
        "rss_before_mb": rss_before,
    }


def run_case(impl: str, bits: int, group_bits: int, threads: int, args: argparse.Namespace) -> dict:
    opts = {"--impl": impl, "--bits": bits, "--group-bits": group_bits, "--threads": threads, "--batch": args.batch,
            "--iters": args.iters, "--warmup": args.warmup}  # fmt: skip
    cmd = [sys.executable, __file__, "--child", *(str(v) for kv in opts.items() for v in kv), "--latent"]
    cmd += [str(v) for v in args.latent]
    row = {
        "impl": impl,
        "codes": f"2^{bits}",
        "group_bits": group_bits if impl == "videopoet" else None,
        "threads": threads,
        "tokens": args.batch * args.latent[0] * args.latent[1] * args.latent[2],
    }
    # the reference LFQ gets a 16 GB address space, so an [N, 2^K] blow-up fails instead of swapping
    limit = None if impl == "videopoet" else _limit_address_space
    proc = subprocess.run(cmd, capture_output=True, text=True, preexec_fn=limit)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["killed"])[-1]
        return {**row, "status": f"failed: {last[:120]}"}
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    ok = result["median_ms"] <= TARGET_MS and result["extra_peak_mb"] <= TARGET_MB
    return {**row, **result, "status": "ok" if ok else "over target"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bits", type=int, default=18)
    parser.add_argument("--group-bits", type=int, nargs="+", default=[9, 6])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--latent", type=int, nargs=3, default=[5, 16, 16], help="latent t h w per clip")
    parser.add_argument("--iters", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None, help="JSON results file")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--impl", default="videopoet", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args)))
        return

    rows = [run_case("videopoet", args.bits, g, t, args) for g in args.group_bits for t in args.threads]
    try:
        import vector_quantize_pytorch  # noqa: F401

        rows += [run_case("vector_quantize_pytorch", args.bits, args.bits, t, args) for t in args.threads]
    except ImportError:
        print("vector_quantize_pytorch is not installed: its LFQ is not compared")

    head = f"{'impl':<24} {'codes':>6} {'groups':>6} {'thr':>3} {'tokens':>6} {'median ms':>9} {'p90 ms':>7} {'extra MB':>8}  status"
    print(head)
    print("-" * len(head))
    for r in rows:
        if "median_ms" in r:
            print(
                f"{r['impl']:<24} {r['codes']:>6} {r['group_bits'] or '-':>6} {r['threads']:>3} {r['tokens']:>6} "
                f"{r['median_ms']:>9.1f} {r['p90_ms']:>7.1f} {r['extra_peak_mb']:>8.1f}  {r['status']}"
            )
        else:
            print(
                f"{r['impl']:<24} {r['codes']:>6} {r['group_bits'] or '-':>6} {r['threads']:>3} {r['tokens']:>6}  {r['status']}"
            )
    print(
        f"targets: <= {TARGET_MS:.0f} ms and <= {TARGET_MB:.0f} MB extra peak; load average {os.getloadavg()[0]:.2f} "
        f"on {os.cpu_count()} CPUs"
    )
    if args.out:
        meta = {
            "python": platform.python_version(),
            "cpu_count": os.cpu_count(),
            "load_average": os.getloadavg(),
            "machine": platform.machine(),
            "targets": {"ms": TARGET_MS, "mb": TARGET_MB},
        }
        args.out.write_text(json.dumps({"benchmark": "lfq", "meta": meta, "rows": rows}, indent=2))
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
