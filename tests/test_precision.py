"""precision.py: what `precision: auto` resolves to."""

from __future__ import annotations

import pytest
import torch

from videopoet import precision


@pytest.mark.parametrize("fast", [True, False])
def test_auto_is_bf16_only_where_the_cpu_runs_it_fast(fast: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(precision, "cpu_has_fast_bf16", lambda: fast)
    cpu = torch.device("cpu")
    assert precision.autocast_dtype("auto", cpu) == (torch.bfloat16 if fast else None)
    assert precision.autocast_dtype("bf16", cpu) == torch.bfloat16
    assert precision.autocast_dtype("fp32", cpu) is None


def test_amx_makes_bf16_fast_and_avx512_bf16_alone_does_not() -> None:
    assert precision.fast_bf16_in_flags({"fpu", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile", "amx_int8"})
    assert not precision.fast_bf16_in_flags({"fpu", "avx512f", "avx512_bf16", "avx512_fp16", "avx512_vnni"})
    assert not precision.fast_bf16_in_flags({"fpu", "avx2", "fma"})
    flags = precision.cpu_flags()
    assert precision.cpu_has_fast_bf16() == ("amx_bf16" in flags)
    assert precision.cpu_has_bf16() == bool({"avx512_bf16", "amx_bf16"} & flags)
    assert not flags or "fpu" in flags  # read from the flags line, whole words
