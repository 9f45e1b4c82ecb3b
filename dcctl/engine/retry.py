"""The one retry policy: exponential backoff with jitter, for TransientError only, within a deadline."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from dcctl.providers.base import TransientError

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 8  # ~35 s in all: long enough for a cloud to release ports after a server delete (409 in use)
    base_delay: float = 0.5
    factor: float = 2.0
    max_delay: float = 10.0
    jitter: float = 0.2

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait before attempt ``attempt + 1`` (a server's Retry-After wins when it asks for longer)."""
        backoff = min(self.max_delay, self.base_delay * self.factor**attempt)
        backoff *= 1 + random.uniform(-self.jitter, self.jitter)
        return max(backoff, retry_after or 0.0)


def call_with_retry(
    fn: Callable[[], T],
    policy: RetryPolicy,
    *,
    deadline: float,
    on_retry: Callable[[int, TransientError, float], None] | None = None,
) -> tuple[T, int]:
    """Run ``fn``; retry it on TransientError. Returns (result, attempts). Other errors pass straight through."""
    attempt = 0
    while True:
        attempt += 1
        try:
            return fn(), attempt
        except TransientError as exc:
            wait = policy.delay(attempt - 1, getattr(exc, "retry_after", None))
            if attempt >= policy.attempts or time.monotonic() + wait >= deadline:
                raise
            if on_retry is not None:
                on_retry(attempt, exc, wait)
            time.sleep(wait)
