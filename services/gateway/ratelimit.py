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

    def _level(self, key: str, now: float) -> float:
        capacity = float(self.rate.count)
        tokens, at = self._buckets.pop(key, (capacity, now))
        return min(capacity, tokens + (now - at) * capacity / self.rate.per_s)

    def _store(self, key: str, tokens: float, now: float) -> None:
        self._buckets[key] = (tokens, now)
        while len(self._buckets) > self._max_keys:
            self._buckets.popitem(last=False)

    def hit(self, key: str, cost: float = 1.0) -> float:
        """Take ``cost`` from ``key``'s bucket; 0.0 if allowed, else the seconds until it would be."""
        return self.hit_all((key,), cost)

    def hit_all(self, keys: tuple[str, ...] | list[str], cost: float = 1.0) -> float:
        """Take ``cost`` from every bucket of ``keys`` if each has it (else from none); 0.0 if taken, else
        the seconds until all would have it."""
        if not self.enabled or not keys:
            return 0.0
        now = self._clock()
        levels = {key: self._level(key, now) for key in keys}
        wait = max((cost - tokens) * self.rate.per_s / self.rate.count for tokens in levels.values())
        allowed = wait <= 0
        for key, tokens in levels.items():
            self._store(key, tokens - cost if allowed else tokens, now)
        return 0.0 if allowed else wait

    def refund(self, keys: tuple[str, ...] | list[str], cost: float = 1.0) -> None:
        """Give back what ``hit_all`` took (the attempt turned out not to count, e.g. a successful sign-in)."""
        if not self.enabled:
            return
        now = self._clock()
        for key in keys:
            self._store(key, min(float(self.rate.count), self._level(key, now) + cost), now)


def retry_after(wait_s: float) -> str:
    """The Retry-After header value (whole seconds, at least 1)."""
    return str(max(1, math.ceil(wait_s)))
