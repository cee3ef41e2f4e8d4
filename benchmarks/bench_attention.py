"""The prefix-LM attention kernels side by side (issue 20, part 2): what one attention call costs with the
dense boolean mask SDPA gets (`llm_train.attention: dense`), with FlexAttention block masks (`flex`), and
with the causal-only fast path (no mask: SDPA's flash kernel), at a model's head shape.

Rows hold task sequences as the trainer sees them: one per row (prefix-LM and MaskGIT modes alternating,
prefixes of 64-512 tokens), or packed (several documents per row, `llm_train.pack_length`). The masks come
from `llm.masks.MaskLayout`, the trainer's one rule. For each case: the median time of the forward and of
forward + backward (CUDA only: FlexAttention has no backward on the CPU in torch 2.11), the SDPA kernel
that took the call, and the largest difference of its output from the dense-mask SDPA output.

    python benchmarks/bench_attention.py --preset 1b --seq-len 2048 --batch 8 --json attention.json   # GPU
    python benchmarks/bench_attention.py --preset tiny --seq-len 256 --batch 2 --no-flex               # CPU smoke
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from videopoet.llm.masks import MaskLayout  # noqa: E402
from videopoet.llm.model import PRESETS  # noqa: E402
from videopoet.sequence import MASKGIT, PREFIX  # noqa: E402


def rows_layout(batch: int, seq: int, generator: torch.Generator) -> MaskLayout:
    """One full-length task sequence per row, prefix-LM and MaskGIT alternating, prefixes of 64-512 tokens."""
    prefix = torch.randint(64, min(512, seq // 2) + 1, (batch,), generator=generator)
    modes = torch.tensor([PREFIX if i % 2 == 0 else MASKGIT for i in range(batch)])
    return MaskLayout.rows(seq, prefix, torch.full((batch,), seq), modes)


def packed_layout(batch: int, seq: int, generator: torch.Generator) -> MaskLayout:
    """Rows packed with documents of seq/8 to seq/2 tokens (the last one cut at the row's end)."""
    shape = (batch, seq)
    documents, positions = torch.empty(shape, dtype=torch.long), torch.empty(shape, dtype=torch.long)
    prefix_len, modes = torch.empty(shape, dtype=torch.long), torch.empty(shape, dtype=torch.long)
    for b in range(batch):
        start, doc = 0, 0
        while start < seq:
            n = min(seq - start, int(torch.randint(seq // 8, seq // 2 + 1, (1,), generator=generator)))
            part = slice(start, start + n)
            documents[b, part], positions[b, part] = doc, torch.arange(n)
            prefix_len[b, part] = int(torch.randint(1, max(2, n // 4), (1,), generator=generator))
            modes[b, part] = PREFIX if doc % 2 == 0 else MASKGIT
            start, doc = start + n, doc + 1
    return MaskLayout(documents, positions, prefix_len, modes)


def sdpa_kernel_of(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, **kwargs) -> str:
    """The first of SDPA's kernels, in its own order of preference, that accepts the call."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    order = [SDPBackend.FLASH_ATTENTION, SDPBackend.CUDNN_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH]
    for backend in order:
        try:
            with sdpa_kernel(backend):
                F.scaled_dot_product_attention(q, k, v, **kwargs)
            return backend.name.lower()
        except RuntimeError:
            continue
    return "none"


def median_ms(fn: Callable[[], object], repeats: int, device: torch.device) -> tuple[float, float, float]:
    """Median, lowest and highest milliseconds of `repeats` calls after two warm-up calls."""
    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    for _ in range(2):
        fn()
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times), min(times), max(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="1b", choices=sorted(PRESETS), help="the LLM preset whose heads to use")
    parser.add_argument("--seq-len", type=int, default=2048)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--dtype", default="auto", choices=("auto", "bf16", "fp32"), help="auto: bf16 on CUDA, fp32 on the CPU")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--no-flex", action="store_true", help="leave FlexAttention out (its compile takes a while on the CPU)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    device = torch.device(args.device)
    dtype = {"bf16": torch.bfloat16, "fp32": torch.float32}.get(args.dtype, torch.bfloat16 if device.type == "cuda" else torch.float32)
    config = PRESETS[args.preset]
    heads, head_dim = config.num_heads, config.hidden_size // config.num_heads
    backward = device.type == "cuda"
    generator = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(args.batch, heads, args.seq_len, head_dim, generator=generator).to(device, dtype) for _ in range(3))
    flex = None
    if not args.no_flex:
        from torch.nn.attention.flex_attention import flex_attention

        flex = torch.compile(flex_attention, dynamic=False)

    def timed(call: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]) -> dict[str, float]:
        out = {"forward_ms": median_ms(lambda: call(q, k, v), args.repeats, device)}
        if backward:
            qg, kg, vg = (t.detach().clone().requires_grad_() for t in (q, k, v))
            out["forward_backward_ms"] = median_ms(lambda: call(qg, kg, vg).sum().backward(), args.repeats, device)
        return {name: round(ms[0], 3) for name, ms in out.items()} | {f"{name}_range": [round(ms[1], 3), round(ms[2], 3)] for name, ms in out.items()}

    results = []
    for rows_name, layout in (("rows", rows_layout(args.batch, args.seq_len, generator)), ("packed", packed_layout(args.batch, args.seq_len, generator))):
        layout = layout.to(device)
        dense = layout.dense()
        with torch.no_grad():
            reference = F.scaled_dot_product_attention(q, k, v, attn_mask=dense).float()
        cases: list[tuple[str, str, Callable]] = [
            ("sdpa_dense_mask", sdpa_kernel_of(q, k, v, attn_mask=dense), partial(F.scaled_dot_product_attention, attn_mask=dense))]
        if flex is not None:
            block_mask = layout.block_mask()
            cases.append(("flex_block_mask", "flex_attention", partial(flex, block_mask=block_mask)))
        if rows_name == "rows":  # the fast path's lower bound: what a prefix-free (causal-only) batch gets
            cases.append(("sdpa_causal_no_mask", sdpa_kernel_of(q, k, v, is_causal=True),
                          partial(F.scaled_dot_product_attention, is_causal=True)))
        for name, kernel, call in cases:
            with torch.no_grad():
                diff = (call(q, k, v).float() - reference).abs().max().item() if "causal" not in name else None
            row = {"rows": rows_name, "case": name, "kernel": kernel, "max_abs_diff_vs_dense": diff, **timed(call)}
            results.append(row)
            print(f"{rows_name:7} {name:20} {kernel:18} fwd {row['forward_ms']:9.3f} ms"
                  + (f"  fwd+bwd {row['forward_backward_ms']:9.3f} ms" if backward else "")
                  + (f"  max |diff| {diff:.2e}" if diff is not None else ""), flush=True)
    summary = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu", "dtype": str(dtype).removeprefix("torch."),
               "preset": args.preset, "heads": heads, "head_dim": head_dim, "seq_len": args.seq_len, "batch": args.batch,
               "torch": torch.__version__, "results": results}
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
