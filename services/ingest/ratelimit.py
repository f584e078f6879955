"""Token buckets: per client IP (requests) and per site (events), so one noisy client or one
runaway shop cannot crowd out the rest. Pure, with an injectable clock."""

from __future__ import annotations

import time
from collections.abc import Callable


class TokenBuckets:
    """Per key, `rate` tokens a second refill a bucket of `burst`; a request takes `cost`."""

    def __init__(
        self,
        rate: float,
        burst: float,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = 100_000,
    ) -> None:
        self._rate = rate
        self._burst = burst
        self._clock = clock
        self._max_keys = max_keys
        self._buckets: dict[str, tuple[float, float]] = {}

    def take(self, key: str, cost: float = 1.0) -> float:
        """0 when allowed (and the tokens are taken); otherwise the seconds until it would be."""
        if self._rate <= 0:
            return 0.0
        now = self._clock()
        tokens, then = self._buckets.get(key, (self._burst, now))
        tokens = min(self._burst, tokens + (now - then) * self._rate)
        if tokens < cost:
            self._buckets[key] = (tokens, now)
            return (min(cost, self._burst) - tokens) / self._rate
        if len(self._buckets) >= self._max_keys and key not in self._buckets:
            self._forget_full(now)
        self._buckets[key] = (tokens - cost, now)
        return 0.0

    def _forget_full(self, now: float) -> None:
        """Keys whose bucket has refilled carry no information; drop them to bound memory."""
        self._buckets = {
            key: (tokens, then)
            for key, (tokens, then) in self._buckets.items()
            if tokens + (now - then) * self._rate < self._burst
        }
