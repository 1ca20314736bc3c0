"""Time-of-week prediction: prewarm ahead of the hours that usually get work.

Arrivals are counted per ``bucket_min`` slot of the week (UTC). When the slot a boot time from
now expects at least ``threshold`` jobs (mean over the weeks seen), keep enough instances warm
for its usual concurrency; otherwise behave like scale-to-zero with ``idle_s``.
"""

from __future__ import annotations

import math
from datetime import datetime, timezone

from .base import Decision, History, Observation, minutes

WEEK_S = 7 * 24 * 3600.0
DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
EPOCH_MONDAY = 4 * 86400.0  # 1970-01-05 was a Monday


class TimeOfWeek:
    """Prewarm from the per-slot arrival rate of past weeks."""

    def __init__(self, threshold: float = 0.5, idle_s: float = 300.0, bucket_min: float = 60.0,
                 min_weeks: float = 1.0) -> None:
        self.name = f"time-of-week(>={threshold:g} jobs/{bucket_min:.0f}min,idle={minutes(idle_s)})"
        self.threshold, self.idle_s = threshold, idle_s
        self.bucket_s = bucket_min * 60.0
        self.slots = int(WEEK_S // self.bucket_s)
        self.min_weeks = min_weeks
        self.counts = [0] * self.slots
        self.work = [0.0] * self.slots  # GPU seconds per slot
        self.first: float | None = None
        self.history = History()

    def slot(self, t: float) -> int:
        """The week slot of epoch time ``t``."""
        return int(((t - EPOCH_MONDAY) % WEEK_S) // self.bucket_s)

    def observe(self, arrival: float, gpu_s: float) -> None:
        self.history.add(arrival, gpu_s)
        self.first = arrival if self.first is None else self.first
        s = self.slot(arrival)
        self.counts[s] += 1
        self.work[s] += gpu_s

    def weeks_seen(self, now: float) -> float:
        """How many weeks of history there are."""
        return 0.0 if self.first is None else (now - self.first) / WEEK_S

    def passes(self, slot: int, now: float) -> int:
        """How many times ``slot`` has begun since the week of the first arrival, up to ``now``."""
        if self.first is None:
            return 0
        week_start = self.first - ((self.first - EPOCH_MONDAY) % WEEK_S)
        begins = week_start + slot * self.bucket_s
        return 0 if now < begins else int((now - begins) // WEEK_S) + 1

    def expected(self, slot: int, now: float) -> tuple[float, int]:
        """(mean arrivals, instances for its usual concurrency) in ``slot`` over the weeks seen."""
        weeks = max(1, self.passes(slot, now))
        rate = self.counts[slot] / weeks
        busy = self.work[slot] / weeks / self.bucket_s  # mean instances busy in that slot
        return rate, max(1, math.ceil(busy))

    def decide(self, obs: Observation) -> Decision:
        if self.weeks_seen(obs.now) < self.min_weeks:
            return Decision(keep=0, idle_timeout_s=900.0, recheck_s=3600.0,
                            reason=f"time of week: {self.weeks_seen(obs.now) * 7:.1f} days of history, "
                                   f"learning; idle ones end after 15 min")
        ahead = obs.now + obs.boot_s
        best: tuple[float, int, int] | None = None
        for t in (obs.now, ahead):
            s = self.slot(t)
            rate, need = self.expected(s, obs.now)
            if rate >= self.threshold and (best is None or need > best[1]):
                best = (rate, need, s)
        to_next = self.bucket_s - ((ahead - EPOCH_MONDAY) % self.bucket_s)
        if best is None:
            return Decision(keep=0, idle_timeout_s=self.idle_s, recheck_s=to_next,
                            reason=f"time of week: quiet slot {self._slot_text(self.slot(ahead))} "
                                   f"(<{self.threshold:g} jobs usually); idle ones end after {minutes(self.idle_s)}")
        rate, need, s = best
        return Decision(keep=need, idle_timeout_s=self.idle_s, recheck_s=to_next,
                        reason=f"prewarm {need}: expected {rate:.1f} jobs in {self._slot_text(s)} "
                               f"({max(1, self.passes(s, obs.now))} weeks of history, boot ~{minutes(obs.boot_s)})")

    def _slot_text(self, slot: int) -> str:
        start = slot * self.bucket_s
        day = int(start // 86400)
        t0 = datetime.fromtimestamp(start % 86400, timezone.utc)
        t1 = datetime.fromtimestamp((start + self.bucket_s) % 86400, timezone.utc)
        return f"{DAYS[day]} {t0:%H:%M}-{t1:%H:%M}"
