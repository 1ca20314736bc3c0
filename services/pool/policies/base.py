"""What a policy sees and what it decides (pure)."""

from __future__ import annotations

import bisect
import heapq
from typing import Protocol

import msgspec

DEFAULT_BOOT_S = 240.0


class Observation(msgspec.Struct, frozen=True, kw_only=True):
    """The pool right now, as a policy needs it. Times are epoch seconds (UTC)."""

    now: float
    live: int = 0
    busy: int = 0
    waiting: int = 0
    boot_s: float = DEFAULT_BOOT_S  # observed time from rental to Ready
    last_activity: float | None = None  # last arrival or release


class Decision(msgspec.Struct, frozen=True, kw_only=True):
    """How many live instances to keep, the idle timeout of the rest, and why.

    ``queue_wait_s``: for waiting jobs, rent only as many instances as it takes to drain the queue
    within this many seconds, counting the ones already there or booting (0: one per waiting job,
    like the generation service's autoscale).
    ``recheck_s``: the decision may change this many seconds from now even if nothing happens.
    """

    keep: int
    idle_timeout_s: float
    reason: str
    queue_wait_s: float = 0.0
    recheck_s: float | None = None


class Policy(Protocol):
    """A warm-pool policy: learns from arrivals, decides from an observation."""

    name: str

    def observe(self, arrival: float, gpu_s: float) -> None:
        """A job arrived (learn from it; only the past is ever shown)."""

    def decide(self, obs: Observation) -> Decision:
        """What to keep now."""


class History:
    """Arrivals seen so far (ascending), with their GPU seconds, and the idle gaps they imply.

    ``idle_gaps``: for each arrival, how long the instance that would take it (the one freed most
    recently, had every job started on arrival) sat idle before it; arrivals that would need a new
    instance add none. With one job at a time these are the pool's idle times between jobs; with
    several at once, each instance's.
    """

    def __init__(self) -> None:
        self.arrivals: list[float] = []
        self.gpu_s: list[float] = []
        self.idle_gaps: list[float] = []  # sorted
        self._running: list[float] = []  # heap of end times of the virtual instances' jobs
        self._free: list[float] = []  # when each free virtual instance became free (a stack)

    def add(self, arrival: float, gpu_s: float) -> None:
        """Record one arrival."""
        while self._running and self._running[0] <= arrival:
            self._free.append(heapq.heappop(self._running))
        self._free.sort()
        if self._free:
            bisect.insort(self.idle_gaps, arrival - self._free.pop())
        heapq.heappush(self._running, arrival + gpu_s)
        self.arrivals.append(arrival)
        self.gpu_s.append(gpu_s)

    def mean_gpu_s(self) -> float:
        """Mean GPU seconds of a job (60 s before any was seen)."""
        return sum(self.gpu_s) / len(self.gpu_s) if self.gpu_s else 60.0


def quantile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank quantile of an ascending list (0 for an empty one)."""
    if not sorted_values:
        return 0.0
    rank = min(len(sorted_values) - 1, max(0, int(-(-q * len(sorted_values) // 1)) - 1))
    return sorted_values[rank]


def minutes(seconds: float) -> str:
    """A duration for a reason string: '45 s', '12 min', '3.5 h'."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
