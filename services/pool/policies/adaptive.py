"""The adaptive policy: time-of-week prewarm, histogram keep-alive, and a queue that is drained, not chased.

- ahead of a week slot that usually gets at least ``threshold`` jobs (once a week of history
  exists; 0: never): prewarm like ``TimeOfWeek``;
- after work: keep-alive/pre-warm windows from the idle-gap histogram (``HistogramKeepAlive``);
- jobs waiting: rent only what drains the queue within ``drain_s`` (0: a boot time), counting the
  instances already booting, instead of one per waiting job.
"""

from __future__ import annotations

from .base import Decision, Observation, minutes
from .histogram import HistogramKeepAlive
from .timeofweek import TimeOfWeek


class Adaptive:
    """Time-of-week prewarm + histogram keep-alive + drain-aware queue."""

    def __init__(self, tail: float = 0.95, threshold: float = 2.0, drain_s: float = 60.0) -> None:
        week = f",week>={threshold:g}/h" if threshold > 0 else ""
        self.name = f"adaptive(tail=p{tail * 100:.0f}{week},drain<{minutes(drain_s) if drain_s else 'boot'})"
        self.threshold = threshold
        self.keepalive = HistogramKeepAlive(tail=tail, fallback_idle_s=300.0)
        self.week = TimeOfWeek(threshold=threshold, idle_s=60.0)
        self.drain_s = drain_s
        self.history = self.keepalive.history

    def observe(self, arrival: float, gpu_s: float) -> None:
        self.keepalive.observe(arrival, gpu_s)
        self.week.observe(arrival, gpu_s)

    def decide(self, obs: Observation) -> Decision:
        after = self.keepalive.decide(obs)
        drain = self.drain_s or obs.boot_s
        best = after
        if self.threshold > 0 and self.week.weeks_seen(obs.now) >= 1:
            ahead = self.week.decide(obs)
            if ahead.keep > after.keep:
                best = ahead
        recheck = min(x for x in (after.recheck_s, 900.0) if x is not None)
        return Decision(keep=best.keep, idle_timeout_s=after.idle_timeout_s, queue_wait_s=drain,
                        recheck_s=recheck,
                        reason=f"{best.reason}; waiting jobs get what drains the queue within {minutes(drain)}")
