"""FLOPs per token (the MFU numerator) and the peak it is taken against."""

from __future__ import annotations

import pytest
import torch

from videopoet.llm import flops
from videopoet.llm.model import PRESETS, LLMConfig, transformer_parameters


def test_flops_per_token_is_six_times_parameters_plus_attention() -> None:
    config = LLMConfig(hidden_size=64, num_layers=2, num_heads=4, intermediate_size=128)
    params = transformer_parameters(config) + 1000 * 64
    assert flops.flops_per_token(config, 1000, 256) == 6 * params + 12 * 2 * 64 * 256
    big = PRESETS["1b"]
    assert flops.flops_per_token(big, 300_000, 2048) > flops.flops_per_token(big, 300_000, 1024)  # attention grows with S


def test_peak_is_the_datasheets_for_known_gpus_and_measured_elsewhere(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "NVIDIA H200")
    assert flops.peak_tflops(torch.device("cuda", 0), torch.bfloat16) == 989.0
    measured = flops.measure_matmul_tflops(torch.device("cpu"), torch.float32, size=128, seconds=0.05)
    assert 0 < measured < 100  # a CPU core does GFLOP/s, not hundreds of TFLOP/s
