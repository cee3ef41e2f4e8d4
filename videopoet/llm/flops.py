"""Model FLOPs per token and the machine's matrix-multiply peak, for the MFU estimate."""

from __future__ import annotations

import time

import torch

from videopoet.llm.model import LLMConfig, transformer_parameters

# Dense bf16 peaks of common accelerators (TFLOP/s), by a substring of the device name.
KNOWN_PEAKS_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0, "L40S": 362.0, "A10G": 125.0}


def flops_per_token(config: LLMConfig, vocab_rows: int, seq_len: int) -> float:
    """Training FLOPs per token: 6 x (transformer + head parameters) plus attention's 12 x L x H x S."""
    params = transformer_parameters(config) + vocab_rows * config.hidden_size
    return 6.0 * params + 12.0 * config.num_layers * config.hidden_size * seq_len


def measure_matmul_tflops(device: torch.device, dtype: torch.dtype, size: int = 2048, seconds: float = 0.5) -> float:
    """Measured matrix-multiply throughput of this device in TFLOP/s (the roof MFU is taken against).

    Square matrices grow from 256 up to `size` while one product takes under a tenth of `seconds`, so a
    device that emulates `dtype` (bf16 on a CPU without AVX512-BF16: about a minute per 2048 product) is
    measured in about `seconds` too, at the largest size that fits."""

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    n = min(256, size)
    while True:
        a = torch.randn(n, n, device=device, dtype=dtype)
        b = torch.randn(n, n, device=device, dtype=dtype)
        a @ b  # warm-up
        sync()
        start = time.perf_counter()
        a @ b
        sync()
        if n >= size or time.perf_counter() - start >= seconds / 10:
            break
        n = min(2 * n, size)
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        a @ b
        count += 1
        sync()
    return 2.0 * n**3 * count / (time.perf_counter() - start) / 1e12


def peak_tflops(device: torch.device, dtype: torch.dtype) -> float:
    """The datasheet peak of a known GPU, otherwise a short measurement on this device."""
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        for key, value in KNOWN_PEAKS_TFLOPS.items():
            if key in name:
                return value
    return measure_matmul_tflops(device, dtype)
