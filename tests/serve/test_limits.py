"""Request limits name the field they reject; the rate limiter is a sliding one-minute window per key."""

from __future__ import annotations

import pytest

from videopoet.serve.limits import FieldError, Limits, RateLimiter, check_params


@pytest.mark.parametrize(("params", "field"), [
    ({"prompt": "x" * 11}, "prompt"),
    ({"seconds": 0}, "seconds"),
    ({"seconds": 31}, "seconds"),
    ({"num_samples": 0}, "num_samples"),
    ({"num_samples": 5}, "num_samples"),
    ({"steps": 0}, "steps"),
    ({"steps": 65}, "steps"),
    ({"cfg": -1.0}, "cfg"),
    ({"temperature": 11.0}, "temperature"),
    ({"seed": -1}, "seed"),
])
def test_each_limit_names_its_field(params: dict, field: str) -> None:
    with pytest.raises(FieldError) as e:
        check_params(params, Limits(max_prompt_chars=10))
    assert e.value.field == field and e.value.status == 422 and str(e.value).startswith(f"{field}: ")


def test_within_limits_passes() -> None:
    check_params({"prompt": "a red circle", "seconds": 4.0, "num_samples": 2, "steps": 8, "cfg": 3.0, "temperature": 0.0, "seed": 7}, Limits())
    assert Limits(max_upload_mb=1).max_upload_bytes == 1 << 20
    with pytest.raises(ValueError):
        Limits(max_queue=0)


def test_rate_limiter_window() -> None:
    rate = RateLimiter(per_minute=2)
    assert rate.acquire("a", now=0.0) == 0 and rate.acquire("a", now=1.0) == 0
    assert rate.acquire("a", now=30.0) == 30  # the first event leaves the window at 60 s
    assert rate.acquire("b", now=30.0) == 0  # keys are counted apart
    assert rate.acquire("a", now=60.0) == 0 and rate.acquire("a", now=60.5) == 1
