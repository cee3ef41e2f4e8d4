"""Which float type training runs in: bf16 where the hardware does bf16 matrix math natively, else fp32.

Shared by the tokenizers' trainer (torch autocast) and the LLM trainer (DeepSpeed's bf16 mode), so that
`precision: auto` means the same thing everywhere.
"""

from __future__ import annotations

from pathlib import Path

import torch


def cpu_has_bf16() -> bool:
    """Whether this CPU does bf16 matrix math natively (AVX512-BF16 or AMX)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """bf16 when asked for, or when `auto` and the hardware runs it fast; None means fp32."""
    if precision == "fp32":
        return None
    if precision == "bf16":
        return torch.bfloat16
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else None
    return torch.bfloat16 if device.type == "cpu" and cpu_has_bf16() else None
