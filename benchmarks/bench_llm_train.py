"""LLM training throughput: the DeepSpeed trainer against a bare PyTorch loop, and MFU.

Both run the same model on the same batches (one rank, this machine): the trainer through DeepSpeed with
its loader, logging and loss breakdowns; the bare loop as forward, backward and an AdamW step. The
overhead is 1 - trainer/bare tokens per second. MFU is taken against this machine's measured fp32 and
bf16 matrix-multiply peaks, and on a known GPU against its datasheet dense peak (`llm.flops.peak_tflops`).

`--config` takes a project config's model and training settings (e.g. configs/videopoet-1b.yaml) instead
of the small built-in model, with the paper's vocabulary; `--seq-len` sets the sequences' length
(text-to-video records with that many tokens, about); on a GPU the peak memory is reported too.

    DS_ACCELERATOR=cpu .venv/bin/python benchmarks/bench_llm_train.py --steps 30 --out llm_train.json
    .venv/bin/python benchmarks/bench_llm_train.py --config configs/videopoet-1b.yaml --seq-len 2048 \
        --precision bf16 --steps 20 --no-bare --out llm_train_gpu.json   # on a GPU
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


def make_records(path: Path, n: int, video_shape: tuple[int, int, int], seed: int = 0, vocab=None) -> None:
    """`n` random token records with video ids of `video_shape` over `vocab` (default: a small one)."""
    import datasets

    from videopoet.vocab import SharedVocab

    vocab = vocab or SharedVocab(text_size=512, video_bits=10, audio_levels=2, audio_codebook_size=256)
    rng = np.random.default_rng(seed)
    t, h, w = video_shape
    levels, codes = vocab.audio_levels, vocab.audio_codebook_size
    rows = [
        {
            "clip_id": f"clip{i}",
            "text_ids": rng.integers(0, min(500, vocab.text_size), 12).tolist(),
            "video_ids": rng.integers(0, 2**vocab.video_bits, t * h * w).tolist(),
            "video_shape": [t, h, w],
            "audio_ids": rng.integers(0, codes, levels * 106).tolist(),
            "audio_shape": [levels, 106],
            "height": 64,
            "width": 64,
        }
        for i in range(n)
    ]
    datasets.Dataset.from_list(rows).save_to_disk(str(path / "records"))
    vocab.save(path / "vocab.json")


# VideoPoet's vocabulary (as in bench_sampling.py): 32k text, 2^18 video codes, 4 x 1024 audio codes
PAPER_VOCAB = dict(text_size=32000, video_bits=18, audio_levels=4, audio_codebook_size=1024)


def config_from(args: argparse.Namespace) -> dict:
    """The project config the benchmark trains: the built-in small model, or `--config`'s sections with
    the benchmark's steps, logging, batch size and precision."""
    train = {
        "steps": args.steps, "log_every": 5, "val_every": 10**6, "save_every": 10**6, "precision": args.precision,
        "maskgit_ratio": 0.5, "optim": {"lr": 1e-4, "warmup_steps": 5},
    }  # fmt: skip
    if args.config is None:
        return {
            "llm": {"hidden_size": args.hidden, "num_layers": args.layers, "num_heads": 4, "max_position_embeddings": 1024},
            "tasks": {"mixture": {"text_to_video": 1.0}},
            "llm_train": {**train, "micro_batch_size": args.batch_size or 4, "deepspeed": str(ROOT / "deploy/deepspeed/zero0.json")},
        }
    config = yaml.safe_load(args.config.read_text()) or {}
    llm_train = config.setdefault("llm_train", {})
    optim = {**llm_train.get("optim", {}), **train.pop("optim")}
    llm_train.update(train, optim=optim)
    if args.batch_size:
        llm_train["micro_batch_size"] = args.batch_size
    ds = Path(llm_train.get("deepspeed", "deploy/deepspeed/zero2.json"))
    llm_train["deepspeed"] = str(ds if ds.is_absolute() else ROOT / ds)
    config.setdefault("tasks", {})["mixture"] = {"text_to_video": 1.0}
    llm = config.setdefault("llm", {})
    llm["max_position_embeddings"] = max(int(llm.get("max_position_embeddings", 4096)), args.seq_len + 64)
    return config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=None, help="micro-batch (default 4, or --config's)")
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--config", type=Path, default=None, help="train this project config's model (paper vocabulary)")
    parser.add_argument("--seq-len", type=int, default=0, help="sequence length to train at, about (default: ~550)")
    parser.add_argument("--no-bare", action="store_true", help="skip the bare PyTorch loop (trainer only)")
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        os.environ.setdefault("DS_ACCELERATOR", "cpu")

    from videopoet.config import load_project_config
    from videopoet.llm import parallelize
    from videopoet.llm.flops import flops_per_token, measure_matmul_tflops, peak_tflops
    from videopoet.llm.masks import attention_mask
    from videopoet.llm.model import build_model, sequence_loss
    from videopoet.llm.train import LLMTrainer
    from videopoet.vocab import SharedVocab

    work = Path(tempfile.mkdtemp(prefix="bench_llm_"))
    # text-to-video rows: ~20 tokens of markers and text, then t x 8 x 8 video tokens
    video_shape = (max(1, (args.seq_len - 32) // 64), 8, 8) if args.seq_len else (5, 8, 8)
    make_records(work / "tokens", 256, video_shape, vocab=SharedVocab(**PAPER_VOCAB) if args.config else None)
    (work / "c.yaml").write_text(yaml.safe_dump(config_from(args)))
    sections = load_project_config(work / "c.yaml")

    trainer = LLMTrainer(sections, work / "tokens", work / "run", resume="none")
    trainer.save = lambda: work / "run"  # no checkpoint: at 1b it would write ~33 GB after the timed steps
    device = trainer.device
    batch_size = sections["llm_train"].micro_batch_size
    dtype = torch.bfloat16 if args.precision == "bf16" else torch.float32

    def bare_loop() -> float:
        """Tokens/s of forward, backward, clipping and AdamW on the trainer's own batches."""
        torch.manual_seed(0)
        model = build_model(sections["llm"], trainer.vocab).to(device, dtype)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
        loader = type(trainer.train_loader)(trainer.train_loader.records, trainer.train_loader.builder, batch_size,
                                            seed=0, maskgit_ratio=0.5)
        batches = iter(loader)
        times, tokens = [], []
        for step in range(args.steps):
            batch = {k: v.to(device) for k, v in next(batches).items()}
            start = time.perf_counter()
            ids = batch["input_ids"]
            mask = attention_mask(ids.shape[1], batch["prefix_len"], batch["lengths"], batch["modes"])
            loss = sequence_loss(model(input_ids=ids, attention_mask=mask).logits, batch["labels"], batch["modes"])
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            opt.zero_grad(set_to_none=True)
            if device.type == "cuda":
                torch.cuda.synchronize()
            if step >= 5:
                times.append(time.perf_counter() - start)
                tokens.append(int(batch["lengths"].sum()))
        result = sum(tokens) / sum(times)
        del model, opt
        if device.type == "cuda":
            torch.cuda.empty_cache()
        return result

    # bare, trainer, bare: the mean of the two bare runs brackets the trainer against drifting load
    bare_before = None if args.no_bare else bare_loop()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    trainer.fit()
    trainer_peak_gib = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else None
    windows = [r["tokens_per_s"] for r in trainer_history(work / "run")][1:]  # the first window holds warm-up
    ours = statistics.median(windows)
    bare_after = None if args.no_bare else bare_loop()
    bare = None if args.no_bare else (bare_before + bare_after) / 2
    model = trainer.engine.module

    fpt = flops_per_token(sections["llm"], model.config.vocab_size, trainer.train_loader.typical_length())
    if device.type == "cuda":  # the datasheet's dense peak of a known GPU (else measured), for both
        peak32 = peak16 = peak_tflops(device, torch.bfloat16)
        machine = f"{torch.cuda.get_device_name(device)}, torch {torch.__version__}"
    else:
        peak32 = measure_matmul_tflops(torch.device("cpu"), torch.float32)
        peak16 = measure_matmul_tflops(torch.device("cpu"), torch.bfloat16)
        machine = f"{os.cpu_count()} CPU threads, torch {torch.__version__}"
    result = {
        "machine": machine,
        "config": str(args.config) if args.config else "built-in",
        "precision": args.precision,
        "activation_checkpointing": sections["llm_train"].activation_checkpointing,
        "params_million": sum(p.numel() for p in model.parameters()) / 1e6,
        "batch_size": batch_size,
        "mean_seq_len": trainer.train_loader.typical_length(),
        "flops_per_token": fpt,
        "trainer_tokens_per_s": ours,
        "bare_tokens_per_s": bare,
        "bare_before_after": None if args.no_bare else [bare_before, bare_after],
        "overhead": None if args.no_bare else 1 - ours / bare,
        "peak_fp32_tflops": peak32,
        "peak_bf16_tflops": peak16,
        "mfu_vs_fp32_peak": ours * fpt / (peak32 * 1e12),
        "mfu_vs_bf16_peak": ours * fpt / (peak16 * 1e12),
        "peak_gpu_memory_gib": trainer_peak_gib,
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
