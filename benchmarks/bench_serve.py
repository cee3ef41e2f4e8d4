"""`videopoet serve` under load: clips per second, p50 / p95 latency and queue wait from C concurrent
clients (C = 1, 4, 16), with batching (`--max-batch 16`) and without (`--max-batch 1`), per sampler; the
batch's run (sampling, decoding, writing) and the rest of each request's latency (HTTP, events, database);
and the server process's peak memory.

The server is a real `videopoet serve` process on 127.0.0.1. The model is `--model DIR` (e.g. the demo's
`runs/demo/model`) or, by default, a random model of the demo's shape (`serve.tiny.DEMO_SHAPE`: 17x32x32
clips, 5x8x8 video tokens, the `tiny` LLM preset); speed does not depend on the weights. Each client sends
a request, follows its events until it is done, and sends the next, until `--requests` are done.

    .venv/bin/python benchmarks/bench_serve.py --out serve-bench.json
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(model: Path, out: Path, max_batch: int, threads: int | None) -> tuple[subprocess.Popen, str, Path]:
    port = free_port()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    log = out / f"server-b{max_batch}.log"
    proc = subprocess.Popen([sys.executable, "-m", "videopoet.cli", "serve", "--model", str(model), "--out", str(out / f"b{max_batch}"),
                             "--port", str(port), "--max-batch", str(max_batch), "--max-queue", "10000", "--rate", "1000000",
                             "--quota", "10000"], stdout=log.open("w"), stderr=subprocess.STDOUT, env=env, cwd=ROOT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while True:
        try:
            with urllib.request.urlopen(url + "/v1/health", timeout=2):
                return proc, url, log
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the server did not start: {log.read_text()[-2000:]}") from None
            time.sleep(0.2)


def peak_rss_mb(pid: int) -> float:
    """The process's peak resident memory (VmHWM), MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def one_request(url: str, task: str, sampler: str, prompt: str, seed: int) -> dict:
    """Submit, follow the events to the end; the latency seen by the client and the server's timings."""
    body = urllib.parse.urlencode({"task": task, "sampler": sampler, "prompt": prompt, "seed": seed}).encode()
    started = time.perf_counter()
    with urllib.request.urlopen(urllib.request.Request(url + "/v1/generations", data=body, method="POST"), timeout=600) as r:
        job = json.load(r)
    with urllib.request.urlopen(url + job["links"]["events"], timeout=600) as stream:
        for raw in stream:
            line = raw.decode().strip()
            if line.startswith("data: "):
                job = json.loads(line[6:])
                if job["state"] in ("done", "failed", "cancelled"):
                    break
    if job["state"] != "done":
        raise RuntimeError(f"job {job['id']} {job['state']}: {job.get('error')}")
    return {"latency_s": time.perf_counter() - started, "queue_s": job["timings"]["queue_s"], "run_s": job["timings"]["run_s"],
            "batch_size": job["batch_size"]}


def load(url: str, clients: int, requests: int, task: str, sampler: str) -> dict:
    """`requests` requests from `clients` concurrent clients."""
    results, errors, lock = [], [], threading.Lock()
    counter = iter(range(requests))

    def client() -> None:
        while True:
            with lock:
                i = next(counter, None)
            if i is None:
                return
            try:
                r = one_request(url, task, sampler, ["a red circle moving left", "a blue square moving up"][i % 2], i)
            except Exception as e:  # noqa: BLE001 - counted and reported
                with lock:
                    errors.append(str(e))
                continue
            with lock:
                results.append(r)

    started = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    lat = sorted(r["latency_s"] for r in results)
    queue = sorted(r["queue_s"] for r in results)
    # what is neither waiting nor the batch's run (sampling, decoding, writing): HTTP, events, the database
    overhead = sorted(r["latency_s"] - r["queue_s"] - r["run_s"] for r in results)

    def pct(xs: list[float], q: float) -> float:
        return xs[min(len(xs) - 1, round(q * (len(xs) - 1)))] if xs else float("nan")

    return {"clients": clients, "requests": requests, "done": len(results), "errors": errors[:3], "wall_s": wall,
            "clips_per_s": len(results) / wall, "p50_s": pct(lat, 0.5), "p95_s": pct(lat, 0.95),
            "queue_p50_s": pct(queue, 0.5), "queue_p95_s": pct(queue, 0.95), "run_p50_s": pct(sorted(r["run_s"] for r in results), 0.5),
            "overhead_p50_s": pct(overhead, 0.5),
            "mean_batch": statistics.fmean(r["batch_size"] for r in results) if results else float("nan")}


def batching(row: dict) -> str:
    return "off" if row["max_batch"] == 1 else f"<= {row['max_batch']}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="exported model folder (default: a random model of the demo's shape)")
    parser.add_argument("--work", type=Path, help="folder for the built model and the servers' --out (default: a temporary one)")
    parser.add_argument("--task", default="text_to_video")
    parser.add_argument("--samplers", nargs="+", default=["maskgit", "ar"])
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 16], help="--max-batch values (1: no batching)")
    parser.add_argument("--requests", type=int, default=32, help="requests per measurement (at least the clients)")
    parser.add_argument("--threads", type=int, help="OMP_NUM_THREADS of the server (default: torch's own)")
    parser.add_argument("--out", type=Path, help="write the results as JSON")
    args = parser.parse_args()

    work = args.work or Path(tempfile.mkdtemp(prefix="bench-serve-"))
    work.mkdir(parents=True, exist_ok=True)
    model = args.model
    if model is None:
        from videopoet.serve.tiny import DEMO_SHAPE, make_tiny_model

        model = make_tiny_model(work / "tiny", frames=DEMO_SHAPE["frames"], llm=DEMO_SHAPE["llm"], video=DEMO_SHAPE["video"])
    rows = []
    for max_batch in args.batches:
        proc, url, _log = start_server(model, work, max_batch, args.threads)
        try:
            for sampler in args.samplers:
                one_request(url, args.task, sampler, "warm up", 0)
                for clients in args.clients:
                    row = {"sampler": sampler, "max_batch": max_batch,
                           **load(url, clients, max(args.requests, clients), args.task, sampler)}
                    row["server_peak_mb"] = peak_rss_mb(proc.pid)
                    rows.append(row)
                    print(f"{sampler:8} batch<={max_batch:<3} C={clients:<3} {row['clips_per_s']:6.2f} clips/s  p50 {row['p50_s']:6.2f} s  "
                          f"p95 {row['p95_s']:6.2f} s  queue p50 {row['queue_p50_s']:6.2f} s  batch run p50 {row['run_p50_s']:5.2f} s  "
                          f"other p50 {row['overhead_p50_s']:5.2f} s  mean batch {row['mean_batch']:4.1f}  "
                          f"server {row['server_peak_mb']:.0f} MB" + (f"  errors {row['errors']}" if row["errors"] else ""), flush=True)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(120)
    print("\n| sampler | clients | batching | clips/s | p50 latency (s) | p95 latency (s) | queue wait p50 / p95 (s) | mean batch | speed-up |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for row in rows:
        base = next((r for r in rows if r["sampler"] == row["sampler"] and r["clients"] == row["clients"] and r["max_batch"] == 1), None)
        speedup = f"{row['clips_per_s'] / base['clips_per_s']:.2f}x" if base else "-"
        print(f"| {row['sampler']} | {row['clients']} | {batching(row)} | "
              f"{row['clips_per_s']:.2f} | {row['p50_s']:.2f} | {row['p95_s']:.2f} | {row['queue_p50_s']:.2f} / {row['queue_p95_s']:.2f} | "
              f"{row['mean_batch']:.1f} | {speedup} |")
    if args.out:
        args.out.write_text(json.dumps({"model": str(model), "task": args.task, "cpu_count": os.cpu_count(), "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
