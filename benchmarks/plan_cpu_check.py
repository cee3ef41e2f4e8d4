"""`videopoet plan`'s memory model against a real CPU training run: predicted peak vs measured peak RSS.

For each model size (HIDDENxLAYERS) it trains a few steps with `python -m videopoet.llm.train` on random
text-to-video records of one length (one process, DeepSpeed on the CPU, fp32), reads the process's peak
resident set size (`os.wait4`), and compares it with the plan's prediction for the same run: fp32 model
states under the run's ZeRO stage on one rank, activations at its micro-batch and sequence length, the
logits, the optimizer step's temporaries, and the runtime (the RSS of importing torch, DeepSpeed, transformers and datasets, measured here
in a fresh process). The issue's target: within 25%.

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/plan_cpu_check.py --sizes 768x12 1024x16 --out plan_cpu.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

GIB = 2**30


def make_records(path: Path, n: int, video_shape: tuple[int, int, int]) -> None:
    """`n` records of the same shape (12 caption ids, `video_shape` video ids, no audio): every
    text-to-video sequence has the same length, so the batch's length is the plan's."""
    import datasets

    from videopoet.vocab import SharedVocab

    rng = np.random.default_rng(0)
    t, h, w = video_shape
    rows = [{"clip_id": f"clip{i}", "text_ids": rng.integers(0, 500, 12).tolist(),
             "video_ids": rng.integers(0, 1024, t * h * w).tolist(), "video_shape": [t, h, w],
             "audio_ids": [], "audio_shape": [0, 0], "height": 64, "width": 64} for i in range(n)]
    datasets.Dataset.from_list(rows).save_to_disk(str(path / "records"))
    SharedVocab(text_size=512, video_bits=10, audio_levels=2, audio_codebook_size=256).save(path / "vocab.json")


def runtime_rss() -> int:
    """Peak RSS (bytes) of a fresh process that only imports what the trainer imports."""
    code = ("import resource, torch, deepspeed, transformers, datasets, videopoet.llm.train; "
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)")
    env = {**os.environ, "DS_ACCELERATOR": "cpu"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT, check=True)
    return int(out.stdout.strip().splitlines()[-1]) * 1024


def measure(config: Path, data: Path, out: Path) -> tuple[int, float, str]:
    """Train; returns (peak RSS in bytes, seconds, output tail)."""
    env = {**os.environ, "DS_ACCELERATOR": "cpu"}
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "videopoet.llm.train", "--config", str(config), "--data", str(data),
                             "--out", str(out)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
    output = proc.stdout.read().decode(errors="replace")
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"training failed:\n{output[-3000:]}")
    return usage.ru_maxrss * 1024, time.perf_counter() - start, output[-500:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["768x12", "1024x16"], help="HIDDENxLAYERS")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--video-frames", type=int, default=5, help="latent frames of 8x8 per record (length ~20 + 64 x this)")
    parser.add_argument("--deepspeed", default="deploy/deepspeed/zero2.json")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    from videopoet.config import load_project_config
    from videopoet.data.loader import build_train_and_val_loaders
    from videopoet.plan import activation_bytes, model_size, model_state_bytes, optimizer_step_bytes

    work = Path(tempfile.mkdtemp(prefix="plan_cpu_"))
    make_records(work / "tokens", 64, (args.video_frames, 8, 8))
    runtime = runtime_rss()
    print(f"runtime (imports only): {runtime / GIB:.2f} GiB", flush=True)
    stage = int(json.loads((ROOT / args.deepspeed).read_text())["zero_optimization"]["stage"])
    rows = []
    for spec in args.sizes:
        hidden, layers = map(int, spec.split("x"))
        config = {
            "llm": {"hidden_size": hidden, "num_layers": layers, "num_heads": hidden // 64, "max_position_embeddings": 1024},
            "tasks": {"mixture": {"text_to_video": 1.0}, "caption_dropout": 0.0},
            "llm_train": {"steps": args.steps, "micro_batch_size": args.batch_size, "log_every": 1, "val_every": 10**6,
                          "save_every": 10**6, "val_batches": 1, "precision": "fp32", "maskgit_ratio": 0.5,
                          "deepspeed": str(ROOT / args.deepspeed), "optim": {"lr": 1e-4, "warmup_steps": 1}},
        }  # fmt: skip
        path = work / f"{spec}.yaml"
        path.write_text(yaml.safe_dump(config))
        sections = load_project_config(path)
        vocab, loader, _ = build_train_and_val_loaders(work / "tokens", sections["tasks"], batch_size=args.batch_size,
                                                       rank=0, world_size=1, seed=0, val_fraction=0.05, maskgit_ratio=0.5)
        seq = max(int(b["input_ids"].shape[1]) for b, _ in zip(loader, range(args.steps)))
        size = model_size(sections["llm"], vocab.padded_size(sections["llm"].vocab_multiple))
        states = model_state_bytes(size, stage, 1, bf16=False)[0]
        acts = activation_bytes(size, args.batch_size, seq, checkpointing=False, bytes_per_value=4)
        step_tmp = optimizer_step_bytes(size, stage, 1)
        predicted = states + acts["total"] + step_tmp + runtime
        measured, seconds, _ = measure(path, work / "tokens", work / f"run_{spec}")
        row = {"size": spec, "params_million": size.params / 1e6, "seq_len": seq, "micro_batch": args.batch_size,
               "zero": stage, "states_gib": states / GIB, "activations_gib": acts["total"] / GIB,
               "optimizer_step_gib": step_tmp / GIB, "predicted_without_step_gib": (predicted - step_tmp) / GIB,
               "runtime_gib": runtime / GIB, "predicted_gib": predicted / GIB, "measured_gib": measured / GIB,
               "error": predicted / measured - 1, "seconds": seconds}  # fmt: skip
        rows.append(row)
        print("  ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()), flush=True)
    if args.out:
        args.out.write_text(json.dumps({"runtime_gib": runtime / GIB, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
