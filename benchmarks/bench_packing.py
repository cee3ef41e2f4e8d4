"""Sequence packing against length grouping: real (non-padding) tokens per second of a training step, and
the share of padding, on the CPU with the tiny model and the demo's task mix (configs/tiny.yaml).

Both loaders see the same records (bench_llm_train.make_records) and the same micro-batch size in rows:
grouping puts one task sequence per row, packing several per row up to each of `--pack-lengths`
(default: once and twice the longest sequence of the epoch; a longer row holds more tokens per step but
its dense attention also covers the pairs across documents it then masks out). Each repeat times `--steps` steps of forward, backward and an AdamW step
of each loader, alternating, after `--warmup` untimed ones; the spread is over the repeats.

    nice -n 10 .venv/bin/python benchmarks/bench_packing.py --steps 20 --repeats 3 --out packing.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_llm_train import make_records  # noqa: E402


def run(loader, model: torch.nn.Module, steps: int, warmup: int) -> dict[str, float]:
    """Real tokens/s and padding share over `steps` timed training steps of `loader`'s first batches."""
    from videopoet.llm.masks import attention_inputs
    from videopoet.llm.model import IGNORE_INDEX, token_losses

    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    batches = iter(loader)
    seconds, real, slots = 0.0, 0, 0
    for step in range(warmup + steps):
        batch = next(batches)
        start = time.perf_counter()
        logits = model(input_ids=batch["input_ids"], **attention_inputs(batch, "dense", "cpu")).logits
        losses, targets = token_losses(logits, batch["labels"], batch["modes"])
        (losses.sum() / (targets != IGNORE_INDEX).sum().clamp(min=1)).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if step >= warmup:
            seconds += time.perf_counter() - start
            real += int(batch["lengths"].sum())
            slots += batch["input_ids"].numel()
    return {"tokens_per_s": real / seconds, "padding_share": 1 - real / slots, "tokens_per_step": real / steps}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--records", type=int, default=256)
    parser.add_argument("--frames", type=int, default=3, help="latent frames of the records' 8x8 video")
    parser.add_argument("--pack-lengths", type=int, nargs="+", default=None, help="row lengths to pack to (default: 1x and 2x the longest sequence)")
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    args = parser.parse_args()

    from videopoet.config import load_project_config
    from videopoet.data.loader import TaskLoader, load_token_records
    from videopoet.data.tasks import TaskBuilder, record_info
    from videopoet.llm.model import build_model

    sections = load_project_config(ROOT / "configs/tiny.yaml")
    work = Path(tempfile.mkdtemp(prefix="bench_packing_"))
    make_records(work, args.records, (args.frames, 8, 8))
    records, vocab = load_token_records(work)
    builder = TaskBuilder(vocab, sections["tasks"])
    batch_size = sections["llm_train"].micro_batch_size
    infos = [record_info(r) for r in records]
    longest = max(builder.length(i, t, False) for i in infos for t in builder.available(i))
    pack_lengths = args.pack_lengths or [longest, 2 * longest]
    loaders = {"grouped": TaskLoader(records, builder, batch_size, seed=0)}
    for n in pack_lengths:
        loaders[f"packed{n}"] = TaskLoader(records, builder, batch_size, seed=0, pack_length=n)
    torch.manual_seed(0)
    initial = build_model(sections["llm"], vocab).state_dict()
    model = build_model(sections["llm"], vocab)
    results: dict[str, list[dict[str, float]]] = {name: [] for name in loaders}
    for _ in range(args.repeats):
        for name, loader in loaders.items():
            model.load_state_dict(initial)
            results[name].append(run(loader, model, args.steps, args.warmup))

    summary = {
        "machine": f"{torch.get_num_threads()} CPU threads, torch {torch.__version__}",
        "model": "tiny (configs/tiny.yaml), fp32", "task_mix": sections["tasks"].mixture,
        "micro_batch_rows": batch_size, "longest_sequence": longest, "steps": args.steps, "repeats": args.repeats,
    }  # fmt: skip
    print(f"{summary['machine']}; tiny model fp32; {batch_size} rows per micro-batch; longest sequence {longest}; "
          f"{args.steps} timed steps x {args.repeats} repeats")
    print(f"{'loader':10} {'real tokens/s (median, min-max)':>34} {'padding share':>14} {'real tokens/step':>17}")
    for name, rows in results.items():
        tps = [r["tokens_per_s"] for r in rows]
        pad = statistics.mean(r["padding_share"] for r in rows)
        per_step = statistics.mean(r["tokens_per_step"] for r in rows)
        summary[name] = {"tokens_per_s": tps, "median_tokens_per_s": statistics.median(tps), "padding_share": pad,
                         "tokens_per_step": per_step}  # fmt: skip
        print(f"{name:10} {statistics.median(tps):>14.0f} ({min(tps):.0f}-{max(tps):.0f}) {'':>9} {pad:>14.1%} {per_step:>17.0f}")
    for name in loaders:
        if name != "grouped":
            ratios = [p["tokens_per_s"] / g["tokens_per_s"] for p, g in zip(results[name], results["grouped"], strict=True)]
            summary[name]["over_grouped"] = ratios
            print(f"{name} / grouped real tokens/s per repeat: {', '.join(f'{r:.2f}' for r in ratios)}")
    if args.out:
        args.out.write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
