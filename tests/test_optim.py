"""The learning-rate schedule shared by every trainer."""

from __future__ import annotations

import pytest

from videopoet.optim import OptimConfig, lr_lambda


def test_schedule_warmup_then_cosine() -> None:
    f = lr_lambda(OptimConfig(warmup_steps=10, min_lr_ratio=0.1), total_steps=110)
    assert f(0) == pytest.approx(0.1) and f(9) == pytest.approx(1.0)
    assert f(60) == pytest.approx(0.55) and f(110) == pytest.approx(0.1)
    assert all(f(s) >= f(s + 1) for s in range(10, 110))
