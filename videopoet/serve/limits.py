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
    temperature = params.get("temperature")
    if temperature is not None and not 0 <= temperature <= 10:
        raise FieldError("temperature", f"must be 0 to 10, got {temperature:g}")
    seed = params.get("seed")
    if seed is not None and not 0 <= seed < 2**63:
        raise FieldError("seed", f"must be 0 to 2**63 - 1, got {seed}")


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
