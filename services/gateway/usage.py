"""GPU hours and cost per UTC day and per instance state, folded purely from pool instance changes.

The pool settles an instance's cost bucket (``loading``, ``idle``, ``busy``, ``failed``,
``terminating``) whenever its phase changes; this fold records each settled interval under the
days it spans, so usage survives the pool view's compaction of long-ended instances.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

import msgspec

from services.pool.instance import BILLING_PHASES, Instance, cost_bucket


class Bucket(msgspec.Struct, frozen=True, kw_only=True):
    """Time and money in one (day, state) cell."""

    instance_s: float = 0.0
    gpu_s: float = 0.0
    cost: float = 0.0

    def plus(self, other: Bucket) -> Bucket:
        """The sum of two buckets."""
        return Bucket(instance_s=self.instance_s + other.instance_s, gpu_s=self.gpu_s + other.gpu_s,
                      cost=self.cost + other.cost)


class Usage(msgspec.Struct, frozen=True, kw_only=True):
    """Settled usage: ISO day -> state -> bucket."""

    days: dict[str, dict[str, Bucket]] = {}


def _gpus(inst: Instance) -> int:
    return max(1, inst.offer.num_gpus) if inst.offer else 1


def split_by_day(start: datetime, end: datetime) -> list[tuple[str, float]]:
    """Seconds of ``[start, end)`` falling on each UTC day."""
    out: list[tuple[str, float]] = []
    start, end = start.astimezone(UTC), end.astimezone(UTC)
    while start < end:
        midnight = datetime.combine(start.date() + timedelta(days=1), time(), tzinfo=UTC)
        stop = min(end, midnight)
        out.append((start.date().isoformat(), (stop - start).total_seconds()))
        start = stop
    return out


def add_interval(usage: Usage, start: datetime, end: datetime, state: str, dph: float, gpus: int) -> Usage:
    """Usage with ``[start, end)`` billed at ``dph`` in ``state`` added, day by day."""
    parts = split_by_day(start, end)
    if not parts:
        return usage
    days = dict(usage.days)
    for day, seconds in parts:
        cells = dict(days.get(day, {}))
        cell = cells.get(state, Bucket())
        cells[state] = cell.plus(Bucket(instance_s=seconds, gpu_s=seconds * gpus, cost=dph * seconds / 3600.0))
        days[day] = cells
    return Usage(days=days)


def _open_interval(inst: Instance) -> bool:
    return inst.phase in BILLING_PHASES and inst.phase_since is not None and bool(inst.dph)


def fold(usage: Usage, before: Instance | None, after: Instance | None, at: datetime) -> Usage:
    """Record the interval the pool settled when ``before`` became ``after`` (if it settled one)."""
    if before is None or after is None or not _open_interval(before):
        return usage
    if after.phase_since == before.phase_since:
        return usage
    assert before.phase_since is not None
    return add_interval(usage, before.phase_since, at, cost_bucket(before), before.dph, _gpus(before))


def with_running(usage: Usage, instances: list[Instance], now: datetime) -> Usage:
    """Settled usage plus every still-running interval up to ``now``."""
    for inst in instances:
        if _open_interval(inst) and inst.phase_since is not None and inst.phase_since < now:
            usage = add_interval(usage, inst.phase_since, now, cost_bucket(inst), inst.dph, _gpus(inst))
    return usage


def report(usage: Usage, since: date, until: date) -> dict[str, object]:
    """The days in ``[since, until]`` with per-state buckets, and totals (hours, rounded)."""
    def out(b: Bucket) -> dict[str, float]:
        return {"instance_hours": round(b.instance_s / 3600, 6), "gpu_hours": round(b.gpu_s / 3600, 6),
                "cost": round(b.cost, 6)}

    days = []
    total = Bucket()
    by_state: dict[str, Bucket] = {}
    for day in sorted(usage.days):
        if not since.isoformat() <= day <= until.isoformat():
            continue
        cells = usage.days[day]
        day_total = Bucket()
        for state, cell in cells.items():
            day_total = day_total.plus(cell)
            by_state[state] = by_state.get(state, Bucket()).plus(cell)
        total = total.plus(day_total)
        days.append({"date": day, **out(day_total), "by_state": {s: out(c) for s, c in sorted(cells.items())}})
    return {"since": since, "until": until, "days": days, "total": out(total),
            "by_state": {s: out(c) for s, c in sorted(by_state.items())}}


# --- per user: generations charged -------------------------------------------------------------

class UserBucket(msgspec.Struct, frozen=True, kw_only=True):
    """A user's completed generations in one day: how many, the instance and GPU time they held, the charge."""

    jobs: int = 0
    instance_s: float = 0.0
    gpu_s: float = 0.0
    cost: float = 0.0

    def plus(self, other: UserBucket) -> UserBucket:
        """The sum of two buckets."""
        return UserBucket(jobs=self.jobs + other.jobs, instance_s=self.instance_s + other.instance_s,
                          gpu_s=self.gpu_s + other.gpu_s, cost=self.cost + other.cost)


UserDays = dict[str, dict[str, UserBucket]]  # ISO day -> user id -> bucket


def add_charge(days: UserDays, user_id: str, at: datetime, seconds: float, amount: float, gpus: int) -> None:
    """Count one charged generation on the UTC day it was charged (in place: the gateway's generation
    projection folds every charge once, in stream order)."""
    day = at.astimezone(UTC).date().isoformat()
    cells = days.setdefault(day, {})
    cells[user_id] = cells.get(user_id, UserBucket()).plus(
        UserBucket(jobs=1, instance_s=seconds, gpu_s=seconds * max(1, gpus), cost=amount))


def _hours(b: UserBucket) -> dict[str, float]:
    return {"instance_hours": round(b.instance_s / 3600, 6), "gpu_hours": round(b.gpu_s / 3600, 6),
            "cost": round(b.cost, 6)}


def by_user(days: UserDays, since: date, until: date) -> dict[str, dict[str, float]] | None:
    """Each user's totals over ``[since, until]``; None when nobody generated anything then."""
    totals: dict[str, UserBucket] = {}
    for day, cells in days.items():
        if since.isoformat() <= day <= until.isoformat():
            for user, cell in cells.items():
                totals[user] = totals.get(user, UserBucket()).plus(cell)
    return {user: _hours(b) for user, b in sorted(totals.items())} or None


def user_report(days: UserDays, user_id: str, since: date, until: date) -> dict[str, object]:
    """One user's days in ``[since, until]`` and the total (jobs, hours, charged cost)."""
    out = []
    total = UserBucket()
    for day in sorted(days):
        cell = days[day].get(user_id)
        if cell is None or not since.isoformat() <= day <= until.isoformat():
            continue
        total = total.plus(cell)
        out.append({"date": day, "jobs": cell.jobs, **_hours(cell)})
    return {"user_id": user_id, "since": since, "until": until, "days": out,
            "total": {"jobs": total.jobs, **_hours(total)}}
