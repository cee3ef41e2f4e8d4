"""What one request may ask for, and how much each key may ask (docs/serve.md, "Limits").

Request limits (prompt length, upload size, seconds, samples, steps) are checked field by field and
answered 422 naming the field; per-key limits (requests per minute, jobs queued or running at once) are
answered 429 with `Retry-After`; a full queue is 503."""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from dataclasses import dataclass

from videopoet.errors import UserError


@dataclass
class Limits:
    max_prompt_chars: int = 1000
    max_upload_mb: float = 50.0
    max_seconds: float = 30.0  # `seconds`: length of an extended video
    max_num_samples: int = 4
    max_steps: int = 64  # MaskGIT steps
    max_cfg: float = 20.0
    rate_per_minute: int = 60  # requests a key may submit in any 60 s
    max_active_per_key: int = 8  # of a key's jobs queued or running at once
    max_queue: int = 64  # jobs queued (not yet running) over all keys
    max_batch: int = 8  # sampler rows in one batched call

    def __post_init__(self) -> None:
        if min(self.max_prompt_chars, self.max_num_samples, self.max_steps, self.rate_per_minute, self.max_active_per_key,
               self.max_queue, self.max_batch) < 1 or not self.max_upload_mb > 0 or not self.max_seconds > 0:
            raise ValueError("every serve limit must be positive")

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)


class FieldError(UserError, ValueError):
    """A request field out of its limits or of the wrong kind (HTTP 422; 400 for a broken upload)."""

    def __init__(self, field: str, message: str, status: int = 422) -> None:
        super().__init__(f"{field}: {message}")
        self.field, self.message, self.status = field, message, status


def check_params(params: dict, limits: Limits) -> None:
    """Raise `FieldError` for the first field of a generation request outside `limits`."""
    prompt = params.get("prompt") or ""
    if len(prompt) > limits.max_prompt_chars:
        raise FieldError("prompt", f"is {len(prompt)} characters; the limit is {limits.max_prompt_chars}")
    seconds = params.get("seconds")
    if seconds is not None and not 0 < seconds <= limits.max_seconds:
        raise FieldError("seconds", f"must be in (0, {limits.max_seconds:g}], got {seconds:g}")
    n = params.get("num_samples", 1)
    if not 1 <= n <= limits.max_num_samples:
        raise FieldError("num_samples", f"must be 1 to {limits.max_num_samples}, got {n}")
    steps = params.get("steps")
    if steps is not None and not 1 <= steps <= limits.max_steps:
        raise FieldError("steps", f"must be 1 to {limits.max_steps}, got {steps}")
    cfg = params.get("cfg")
    if cfg is not None and not 0 <= cfg <= limits.max_cfg:
        raise FieldError("cfg", f"must be 0 to {limits.max_cfg:g}, got {cfg:g}")
    for field in ("temperature", "choice_temperature"):
        value = params.get(field)
        if value is not None and not 0 <= value <= 10:
            raise FieldError(field, f"must be 0 to 10, got {value:g}")
    top_k = params.get("top_k")
    if top_k is not None and top_k < 0:
        raise FieldError("top_k", f"must be 0 (off) or more, got {top_k}")
    top_p = params.get("top_p")
    if top_p is not None and not 0 < top_p <= 1:
        raise FieldError("top_p", f"must be in (0, 1] (1: off), got {top_p:g}")
    box = params.get("box")
    if box is not None:
        top, left, height, width = box
        if min(box) < 0 or not (height > 0 and width > 0) or top + height > 1 + 1e-9 or left + width > 1 + 1e-9:
            raise FieldError("box", "must lie inside the frame: top, left >= 0, height, width > 0, top + height <= 1, left + width <= 1")
    seed = params.get("seed")
    if seed is not None and not 0 <= seed < 2**63:
        raise FieldError("seed", f"must be 0 to 2**63 - 1, got {seed}")


def parse_box(text: str | None) -> list[float] | None:
    """The in/outpainting box of a form field: four numbers "TOP,LEFT,HEIGHT,WIDTH" (commas or spaces), as
    shares of the frame, as `videopoet generate --box` takes them; None when empty."""
    if text is None or not text.strip():
        return None
    try:
        box = [float(x) for x in text.replace(",", " ").split()]
    except ValueError:
        box = []
    if len(box) != 4 or not all(math.isfinite(x) for x in box):
        raise FieldError("box", f"must be four numbers TOP,LEFT,HEIGHT,WIDTH (shares of the frame), got {text!r}")
    return box


class RateLimiter:
    """At most `per_minute` events per key in any 60-second window (a sliding log per key)."""

    def __init__(self, per_minute: int, window_s: float = 60.0) -> None:
        self.per_minute, self.window_s = per_minute, window_s
        self._events: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def acquire(self, key: str, now: float | None = None) -> int:
        """Record an event for `key` and return 0, or return the seconds to wait (nothing recorded)."""
        now = time.monotonic() if now is None else now
        with self._lock:
            log = self._events.setdefault(key, deque())
            while log and log[0] <= now - self.window_s:
                log.popleft()
            if len(log) >= self.per_minute:
                return max(1, math.ceil(log[0] + self.window_s - now))
            log.append(now)
            return 0
