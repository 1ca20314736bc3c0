"""The simple policies: fixed, seed (the old system), reactive scale-to-zero, queue depth, schedules."""

from __future__ import annotations

from datetime import datetime, timezone

from libs.events import pool as ev

from .base import Decision, History, Observation, minutes

DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


class Fixed:
    """Keep ``n`` instances always; extras rented for waiting jobs end after ``idle_s``."""

    def __init__(self, n: int = 1, idle_s: float = 900.0) -> None:
        self.name, self.n, self.idle_s = f"fixed(n={n})", n, idle_s
        self.history = History()

    def observe(self, arrival: float, gpu_s: float) -> None:
        self.history.add(arrival, gpu_s)

    def decide(self, obs: Observation) -> Decision:
        return Decision(keep=self.n, idle_timeout_s=self.idle_s,
                        reason=f"fixed: keep {self.n} warm always; extras end after {minutes(self.idle_s)} idle")


class Reactive:
    """Rent only when a job waits; an instance ends after ``idle_s`` without use (scale to zero)."""

    def __init__(self, idle_s: float = 120.0, name: str = "") -> None:
        self.name = name or f"reactive(idle={minutes(idle_s)})"
        self.idle_s = idle_s
        self.history = History()

    def observe(self, arrival: float, gpu_s: float) -> None:
        self.history.add(arrival, gpu_s)

    def decide(self, obs: Observation) -> Decision:
        return Decision(keep=0, idle_timeout_s=self.idle_s,
                        reason=f"scale to zero: rent when a job waits, end after {minutes(self.idle_s)} idle")


class Seed(Reactive):
    """The old system: one warm instance that ends after 15 idle minutes; jobs after that rent again."""

    def __init__(self, idle_s: float = 900.0) -> None:
        super().__init__(idle_s, name="seed")

    def decide(self, obs: Observation) -> Decision:
        if not self.history.arrivals:
            return Decision(keep=1, idle_timeout_s=self.idle_s, reason="seed: 1 warm until the first job")
        return Decision(keep=0, idle_timeout_s=self.idle_s,
                        reason=f"seed: keep what was used warm for {minutes(self.idle_s)}, then end it")


class QueueDepth:
    """Rent only what drains the queue within ``target_s`` (up to max_size); idle ones end."""

    def __init__(self, target_s: float = 120.0, idle_s: float = 300.0) -> None:
        self.name = f"queue(drain<{minutes(target_s)},idle={minutes(idle_s)})"
        self.target_s, self.idle_s = target_s, idle_s
        self.history = History()

    def observe(self, arrival: float, gpu_s: float) -> None:
        self.history.add(arrival, gpu_s)

    def decide(self, obs: Observation) -> Decision:
        return Decision(keep=0, idle_timeout_s=self.idle_s, queue_wait_s=self.target_s,
                        reason=f"queue depth: rent what drains the queue within {minutes(self.target_s)} "
                               f"(mean job {minutes(self.history.mean_gpu_s())})")


class Schedule:
    """Keep the most any window asks for (starting a boot time early); outside, like ``Reactive``."""

    def __init__(self, windows: tuple[ev.ScheduleWindow, ...], idle_s: float = 300.0) -> None:
        self.windows = windows or (ev.ScheduleWindow(),)
        self.name = "schedule(" + ",".join(_window_text(w) for w in self.windows) + ")"
        self.idle_s = idle_s
        self.history = History()

    def observe(self, arrival: float, gpu_s: float) -> None:
        self.history.add(arrival, gpu_s)

    def decide(self, obs: Observation) -> Decision:
        ahead = datetime.fromtimestamp(obs.now + obs.boot_s, timezone.utc)
        hour = ahead.hour + ahead.minute / 60
        active = [w for w in self.windows if ahead.weekday() in w.days and w.start_hour <= hour < w.end_hour]
        if not active:
            return Decision(keep=0, idle_timeout_s=self.idle_s, recheck_s=300.0,
                            reason=f"schedule: outside every window; idle ones end after {minutes(self.idle_s)}")
        best = max(active, key=lambda w: w.keep)
        return Decision(keep=best.keep, idle_timeout_s=self.idle_s, recheck_s=300.0,
                        reason=f"schedule: keep {best.keep} warm in {_window_text(best)} "
                               f"(from {minutes(obs.boot_s)} early, the boot time)")


def _window_text(w: ev.ScheduleWindow) -> str:
    days = "weekdays" if tuple(w.days) == (0, 1, 2, 3, 4) else "/".join(DAYS[d % 7] for d in w.days)
    return f"{days} {w.start_hour:02.0f}-{w.end_hour:02.0f} keep {w.keep}"
