"""The GPU tests' device: CUDA when present, otherwise every test here is skipped with the reason.

`VIDEOPOET_GPU_TESTS_ON_CPU=1` runs them with the CPU standing in for the GPU (gloo instead of NCCL,
autocast on the CPU): a check of the tests themselves on a machine without a GPU, not of GPU behaviour.
"""

from __future__ import annotations

import os

import pytest
import torch

STAND_IN = os.environ.get("VIDEOPOET_GPU_TESTS_ON_CPU") == "1"
SKIP_REASON = (
    "no CUDA GPU (torch.cuda.is_available() is False); benchmarks/gpu_check.sh runs these on a GPU machine"
)


@pytest.fixture(scope="session")
def gpu() -> torch.device:
    """The device under test: `cuda`, or the CPU stand-in; skips the test when neither applies."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    if STAND_IN:
        return torch.device("cpu")
    pytest.skip(SKIP_REASON)


@pytest.fixture
def strict_fp32():
    """fp32 matrix math without TF32 (CUDA's default for cuDNN convolutions), restored afterwards: the
    GPU's result must be the CPU's up to summation order."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved
