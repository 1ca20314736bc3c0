"""What a policy sees and what it decides (pure)."""

from __future__ import annotations

import bisect
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
    """Arrivals seen so far (ascending), with their GPU seconds."""

    def __init__(self) -> None:
        self.arrivals: list[float] = []
        self.gpu_s: list[float] = []
        self.busy_until = float("-inf")  # when the work seen so far would end with no waiting
        self.idle_gaps: list[float] = []  # sorted idle times between work and the next arrival

    def add(self, arrival: float, gpu_s: float) -> None:
        """Record one arrival."""
        if self.arrivals and self.busy_until > float("-inf"):
            bisect.insort(self.idle_gaps, max(0.0, arrival - self.busy_until))
        self.arrivals.append(arrival)
        self.gpu_s.append(gpu_s)
        self.busy_until = max(self.busy_until, arrival + gpu_s)

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
