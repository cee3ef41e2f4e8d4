"""LLM training throughput: the DeepSpeed trainer against a bare PyTorch loop, and MFU.

Both run the same model on the same batches (one rank, this machine): the trainer through DeepSpeed with
its loader, logging and loss breakdowns; the bare loop as forward, backward and an AdamW step. The
overhead is 1 - trainer/bare tokens per second. MFU is taken against this machine's measured fp32 and
bf16 matrix-multiply peaks.

    DS_ACCELERATOR=cpu .venv/bin/python benchmarks/bench_llm_train.py --steps 30 --out llm_train.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def make_records(path: Path, n: int, video_shape: tuple[int, int, int], seed: int = 0) -> None:
    import datasets

    from videopoet.vocab import SharedVocab

    rng = np.random.default_rng(seed)
    t, h, w = video_shape
    rows = [
        {
            "clip_id": f"clip{i}",
            "text_ids": rng.integers(0, 500, 12).tolist(),
            "video_ids": rng.integers(0, 1024, t * h * w).tolist(),
            "video_shape": [t, h, w],
            "audio_ids": rng.integers(0, 256, 2 * 106).tolist(),
            "audio_shape": [2, 106],
            "height": 64,
            "width": 64,
        }
        for i in range(n)
    ]
    datasets.Dataset.from_list(rows).save_to_disk(str(path / "records"))
    SharedVocab(text_size=512, video_bits=10, audio_levels=2, audio_codebook_size=256).save(path / "vocab.json")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    args = parser.parse_args()
    os.environ.setdefault("DS_ACCELERATOR", "cpu")

    from videopoet.config import load_project_config
    from videopoet.llm import parallelize
    from videopoet.llm.flops import flops_per_token, measure_matmul_tflops
    from videopoet.llm.masks import attention_mask
    from videopoet.llm.model import build_model, sequence_loss
    from videopoet.llm.train import LLMTrainer

    work = Path(tempfile.mkdtemp(prefix="bench_llm_"))
    make_records(work / "tokens", 256, (5, 8, 8))
    config = {
        "llm": {"hidden_size": args.hidden, "num_layers": args.layers, "num_heads": 4, "max_position_embeddings": 1024},
        "tasks": {"mixture": {"text_to_video": 1.0}},
        "llm_train": {
            "steps": args.steps, "micro_batch_size": args.batch_size,
            "log_every": 5, "val_every": 10**6, "save_every": 10**6, "precision": args.precision, "maskgit_ratio": 0.5,
            "deepspeed": str(ROOT / "deploy/deepspeed/zero0.json"), "optim": {"lr": 1e-4, "warmup_steps": 5},
        },
    }
    (work / "c.yaml").write_text(yaml.safe_dump(config))
    sections = load_project_config(work / "c.yaml")

    trainer = LLMTrainer(sections, work / "tokens", work / "run", resume="none")
    dtype = torch.bfloat16 if args.precision == "bf16" else torch.float32

    def bare_loop() -> float:
        """Tokens/s of forward, backward, clipping and AdamW on the trainer's own batches."""
        torch.manual_seed(0)
        model = build_model(sections["llm"], trainer.vocab).to(dtype)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
        loader = type(trainer.train_loader)(trainer.train_loader.records, trainer.train_loader.builder, args.batch_size,
                                            seed=0, maskgit_ratio=0.5)
        batches = iter(loader)
        times, tokens = [], []
        for step in range(args.steps):
            batch = next(batches)
            start = time.perf_counter()
            ids = batch["input_ids"]
            mask = attention_mask(ids.shape[1], batch["prefix_len"], batch["lengths"], batch["modes"])
            loss = sequence_loss(model(input_ids=ids, attention_mask=mask).logits, batch["labels"], batch["modes"])
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            opt.zero_grad(set_to_none=True)
            if step >= 5:
                times.append(time.perf_counter() - start)
                tokens.append(int(batch["lengths"].sum()))
        return sum(tokens) / sum(times)

    # bare, trainer, bare: the mean of the two bare runs brackets the trainer against drifting load
    bare_before = bare_loop()
    trainer.fit()
    windows = [r["tokens_per_s"] for r in trainer_history(work / "run")][1:]  # the first window holds warm-up
    ours = statistics.median(windows)
    bare_after = bare_loop()
    bare = (bare_before + bare_after) / 2
    model = trainer.engine.module

    fpt = flops_per_token(sections["llm"], model.config.vocab_size, trainer.train_loader.typical_length())
    peak32 = measure_matmul_tflops(torch.device("cpu"), torch.float32)
    peak16 = measure_matmul_tflops(torch.device("cpu"), torch.bfloat16)
    result = {
        "machine": f"{os.cpu_count()} CPU threads, torch {torch.__version__}",
        "precision": args.precision,
        "params_million": sum(p.numel() for p in model.parameters()) / 1e6,
        "batch_size": args.batch_size,
        "mean_seq_len": trainer.train_loader.typical_length(),
        "trainer_tokens_per_s": ours,
        "bare_tokens_per_s": bare,
        "bare_before_after": [bare_before, bare_after],
        "overhead": 1 - ours / bare,
        "peak_fp32_tflops": peak32,
        "peak_bf16_tflops": peak16,
        "mfu_vs_fp32_peak": ours * fpt / (peak32 * 1e12),
        "mfu_vs_bf16_peak": ours * fpt / (peak16 * 1e12),
    }
    parallelize.shutdown()
    width = max(map(len, result))
    for k, v in result.items():
        print(f"{k:<{width}}  {v:.4g}" if isinstance(v, float) else f"{k:<{width}}  {v}")
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")


def trainer_history(run: Path) -> list[dict]:
    return [r for r in map(json.loads, (run / "history.jsonl").read_text().splitlines()) if "tokens_per_s" in r]


if __name__ == "__main__":
    main()
