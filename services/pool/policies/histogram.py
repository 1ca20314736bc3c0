"""Histogram keep-alive ("Serverless in the Wild", USENIX ATC'20), adapted to rented GPUs.

From the distribution of idle gaps (an instance's end of work -> its next job; see
``base.History``) pick a pre-warm window (the ``head`` quantile) and a keep-alive window (the
``tail`` quantile, times ``margin``). If the pre-warm window is longer than a boot, let the
instance go after work and rent again a boot time before the window opens; otherwise keep each
instance warm through the keep-alive window (its idle timeout). Gaps longer than ``range_h``
are out of the histogram's range; when too many are, fall back to a plain idle timeout.
"""

from __future__ import annotations

import math

from .base import Decision, History, Observation, minutes, quantile

MIN_SAMPLES = 10
SPARE_IDLE_S = 60.0  # instances beyond what the windows keep end this soon


class HistogramKeepAlive:
    """Keep-alive and pre-warm windows from the idle-gap histogram."""

    def __init__(self, head: float = 0.05, tail: float = 0.9, range_h: float = 4.0, margin: float = 1.1,
                 fallback_idle_s: float = 600.0) -> None:
        self.name = f"histogram(tail=p{tail * 100:.0f})"
        self.head, self.tail, self.range_s, self.margin = head, tail, range_h * 3600.0, margin
        self.fallback_idle_s = fallback_idle_s
        self.history = History()

    def observe(self, arrival: float, gpu_s: float) -> None:
        self.history.add(arrival, gpu_s)

    def windows(self, boot_s: float) -> tuple[float, float] | None:
        """(rent again after, keep until) seconds after work ends, or None (not enough history)."""
        gaps = self.history.idle_gaps
        in_range = gaps[:_count_le(gaps, self.range_s)]
        if len(in_range) < MIN_SAMPLES or len(in_range) < len(gaps) / 2:
            return None
        prewarm = quantile(in_range, self.head)
        keep_alive = quantile(in_range, self.tail) * self.margin
        start = prewarm - boot_s if prewarm > boot_s + SPARE_IDLE_S else 0.0
        # whole minutes: the live pool records a decision only when it changes, not at every job
        start, keep_alive = math.floor(start / 60) * 60, math.ceil(keep_alive / 60) * 60
        return start, max(keep_alive, start + SPARE_IDLE_S)

    def decide(self, obs: Observation) -> Decision:
        win = self.windows(obs.boot_s)
        gaps = len(self.history.idle_gaps)
        if win is None:
            return Decision(keep=0, idle_timeout_s=self.fallback_idle_s,
                            reason=f"histogram: {gaps} idle gaps seen, too few in range; "
                                   f"idle ones end after {minutes(self.fallback_idle_s)}")
        start, until = win
        if start == 0:  # the next job usually comes sooner than a boot: keep each instance warm
            return Decision(keep=0, idle_timeout_s=until,
                            reason=f"histogram: keep each instance warm {minutes(until)} after its last job "
                                   f"(p{self.tail * 100:.0f} of {gaps} idle gaps)")
        since = obs.now - (obs.last_activity if obs.last_activity is not None else obs.now - until)
        if obs.busy or obs.waiting or since >= until:
            return Decision(keep=obs.busy, idle_timeout_s=SPARE_IDLE_S,
                            reason=f"histogram: the next job rarely comes within {minutes(start + obs.boot_s)}; "
                                   f"after work let go, rent again {minutes(obs.boot_s)} before")
        if since < start:
            return Decision(keep=0, idle_timeout_s=SPARE_IDLE_S, recheck_s=start - since,
                            reason=f"histogram: next job rarely comes within {minutes(start + obs.boot_s)}; "
                                   f"let go, rent again {minutes(obs.boot_s)} before")
        return Decision(keep=1, idle_timeout_s=SPARE_IDLE_S, recheck_s=until - since,
                        reason=f"histogram: pre-warmed 1 until {minutes(until)} after the last job "
                               f"(p{self.tail * 100:.0f} of {gaps} idle gaps)")


def _count_le(values: list[float], limit: float) -> int:
    import bisect
    return bisect.bisect_right(values, limit)
