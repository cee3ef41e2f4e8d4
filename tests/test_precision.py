"""precision.py: what `precision: auto` resolves to."""

from __future__ import annotations

import pytest
import torch

from videopoet import precision


@pytest.mark.parametrize("native", [True, False])
def test_auto_is_bf16_only_where_the_cpu_has_it(native: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(precision, "cpu_has_bf16", lambda: native)
    cpu = torch.device("cpu")
    assert precision.autocast_dtype("auto", cpu) == (torch.bfloat16 if native else None)
    assert precision.autocast_dtype("bf16", cpu) == torch.bfloat16
    assert precision.autocast_dtype("fp32", cpu) is None


def test_cpu_flags_are_read() -> None:
    assert isinstance(precision.cpu_has_bf16(), bool)
