"""Which float type training runs in: bf16 where the hardware runs bf16 matrix math faster than fp32,
else fp32.

Shared by the tokenizers' trainer (torch autocast) and the LLM trainer (DeepSpeed's bf16 mode), so that
`precision: auto` means the same thing everywhere. On a CPU that is one with AMX (Intel's matrix tiles):
AVX512-BF16 alone has bf16 instructions but, measured on such a CPU, trains this project's models slower
in bf16 than in fp32 (docs/results.md, "Precision on the CPU").
"""

from __future__ import annotations

from pathlib import Path

import torch


def cpu_flags() -> set[str]:
    """This CPU's `/proc/cpuinfo` flags (empty where there is no such file)."""
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    return {flag for line in cpuinfo.splitlines() if line.startswith("flags") for flag in line.partition(":")[2].split()}


def fast_bf16_in_flags(flags: set[str]) -> bool:
    """Whether a CPU with these flags runs bf16 matrix math faster than fp32: AMX-BF16."""
    return "amx_bf16" in flags


def cpu_has_bf16() -> bool:
    """Whether this CPU has bf16 instructions at all (AVX512-BF16 or AMX): the speed benchmarks time bf16
    there; elsewhere it is emulated, many times slower."""
    return bool({"avx512_bf16", "amx_bf16"} & cpu_flags())


def cpu_has_fast_bf16() -> bool:
    """Whether this CPU runs bf16 matrix math faster than fp32 (`fast_bf16_in_flags`)."""
    return fast_bf16_in_flags(cpu_flags())


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """bf16 when asked for, or when `auto` and the hardware runs it fast; None means fp32."""
    if precision == "fp32":
        return None
    if precision == "bf16":
        return torch.bfloat16
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else None
    return torch.bfloat16 if device.type == "cpu" and cpu_has_fast_bf16() else None
