"""When to retry a failed call and how long to wait: UNAVAILABLE only, exponential backoff
with jitter, bounded by the attempt count and by the call's deadline."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass

import grpc

from .options import ClientOptions

RETRYABLE = frozenset({grpc.StatusCode.UNAVAILABLE})


@dataclass(frozen=True)
class Deadline:
    """An absolute point on the monotonic clock, or none."""

    at: float | None

    @classmethod
    def after(cls, timeout_s: float | None) -> Deadline:
        return cls(None if timeout_s is None else time.monotonic() + max(0.0, timeout_s))

    def remaining(self) -> float | None:
        """Seconds left (never negative), or None without a deadline."""
        return None if self.at is None else max(0.0, self.at - time.monotonic())


class RetryPolicy:
    """One per call: ``delay`` says how long to sleep before the next attempt, or None to give up."""

    def __init__(self, options: ClientOptions, deadline: Deadline) -> None:
        self.options = options
        self.deadline = deadline
        self.attempts = 0  # made so far

    def delay(self, code: grpc.StatusCode) -> float | None:
        if code not in RETRYABLE or self.attempts > self.options.retries:
            return None
        cap = min(self.options.backoff_max_s, self.options.backoff_initial_s * 2 ** (self.attempts - 1))
        # "equal jitter": at least half the cap, so retries never bunch up at zero delay
        wait = cap / 2 + random.uniform(0, cap / 2)
        remaining = self.deadline.remaining()
        if remaining is not None and wait >= remaining:
            return None  # no time left for another attempt
        return wait
