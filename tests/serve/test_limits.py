"""Request limits name the field they reject; the rate limiter is a sliding one-minute window per key."""

from __future__ import annotations

import pytest

from videopoet.serve.limits import FieldError, Limits, RateLimiter, check_params, parse_box


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
    ({"top_k": -1}, "top_k"),
    ({"top_p": 0.0}, "top_p"),
    ({"top_p": 1.5}, "top_p"),
    ({"choice_temperature": -0.5}, "choice_temperature"),
    ({"box": [0.5, 0.0, 0.6, 0.5]}, "box"),  # past the bottom
    ({"box": [0.0, -0.1, 0.5, 0.5]}, "box"),
    ({"box": [0.0, 0.0, 0.0, 0.5]}, "box"),
])
def test_each_limit_names_its_field(params: dict, field: str) -> None:
    with pytest.raises(FieldError) as e:
        check_params(params, Limits(max_prompt_chars=10))
    assert e.value.field == field and e.value.status == 422 and str(e.value).startswith(f"{field}: ")


def test_within_limits_passes() -> None:
    check_params({"prompt": "a red circle", "seconds": 4.0, "num_samples": 2, "steps": 8, "cfg": 3.0, "temperature": 0.0, "seed": 7,
                  "top_k": 0, "top_p": 1.0, "choice_temperature": 4.5, "box": [0.25, 0.5, 0.75, 0.5]}, Limits())
    assert Limits(max_upload_mb=1).max_upload_bytes == 1 << 20
    with pytest.raises(ValueError):
        Limits(max_queue=0)


def test_parse_box() -> None:
    assert parse_box("0.25,0.5, 0.5,0.25") == [0.25, 0.5, 0.5, 0.25] and parse_box("0 0 1 1") == [0.0, 0.0, 1.0, 1.0]
    assert parse_box(None) is None and parse_box("  ") is None
    for bad in ("0.1,0.2,0.3", "a,b,c,d", "0,0,1,1,1", "nan,0,1,1"):
        with pytest.raises(FieldError) as e:
            parse_box(bad)
        assert e.value.field == "box" and "TOP,LEFT,HEIGHT,WIDTH" in str(e.value)


def test_rate_limiter_window() -> None:
    rate = RateLimiter(per_minute=2)
    assert rate.acquire("a", now=0.0) == 0 and rate.acquire("a", now=1.0) == 0
    assert rate.acquire("a", now=30.0) == 30  # the first event leaves the window at 60 s
    assert rate.acquire("b", now=30.0) == 0  # keys are counted apart
    assert rate.acquire("a", now=60.0) == 0 and rate.acquire("a", now=60.5) == 1
