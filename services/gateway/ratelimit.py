"""Rate limits, pure: one token bucket per key (a token, an IP), refilled continuously."""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable

from services.gateway.config import Rate

Clock = Callable[[], float]


class Limiter:
    """``count`` requests per ``per_s`` seconds per key, with bursts up to ``count``.

    Memory is bounded: the least recently seen keys are forgotten first (a forgotten key
    starts again with a full bucket, which only ever errs toward letting a request through).
    """

    def __init__(self, rate: Rate, *, clock: Clock = time.monotonic, max_keys: int = 100_000) -> None:
        self.rate = rate
        self._clock = clock
        self._max_keys = max_keys
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # key -> (tokens, at)

    @property
    def enabled(self) -> bool:
        """False when the limit is off."""
        return self.rate.count > 0

    def hit(self, key: str, cost: float = 1.0) -> float:
        """Take ``cost`` from ``key``'s bucket; 0.0 if allowed, else the seconds until it would be."""
        if not self.enabled:
            return 0.0
        capacity = float(self.rate.count)
        per_second = capacity / self.rate.per_s
        now = self._clock()
        tokens, at = self._buckets.pop(key, (capacity, now))
        tokens = min(capacity, tokens + (now - at) * per_second)
        if tokens >= cost:
            self._buckets[key] = (tokens - cost, now)
            wait = 0.0
        else:
            self._buckets[key] = (tokens, now)
            wait = (cost - tokens) / per_second
        while len(self._buckets) > self._max_keys:
            self._buckets.popitem(last=False)
        return wait


def retry_after(wait_s: float) -> str:
    """The Retry-After header value (whole seconds, at least 1)."""
    return str(max(1, math.ceil(wait_s)))
