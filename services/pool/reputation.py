"""Host reputation: hosts that failed are avoided for a while, per kind of failure (pure).

Penalties decay: a first failure costs a host an hour or two, a repeat doubles it (capped at a
day), and a host that stayed clean for ``FORGET`` after its last penalty starts over. A reset of
the pool clears them all (view.py). When every matching host is avoided, the reconciler rents the
least-penalised ones rather than nothing, and says so (``severity`` orders them).
"""

from __future__ import annotations

from datetime import datetime, timedelta

import msgspec

# How long a first failure keeps a host out of rentals; each repeat doubles it, up to MAX_PENALTY.
PENALTY = {
    "extraction": timedelta(hours=2),
    "pull": timedelta(hours=1),
    "start": timedelta(hours=1),
    "probe_timeout": timedelta(hours=1),
    "vanished": timedelta(hours=1),
}
MAX_PENALTY = timedelta(hours=24)
FORGET = timedelta(hours=24)  # clean this long after a penalty ended: the count starts over


class Penalty(msgspec.Struct, frozen=True, kw_only=True):
    """A host's most recent failure of one kind."""

    host_id: str
    kind: str
    until: datetime
    count: int = 1
    last_message: str = ""


def penalty_for(kind: str, count: int) -> timedelta:
    """How long the ``count``-th failure of ``kind`` in a row keeps a host out."""
    base = PENALTY.get(kind, timedelta(hours=1))
    return min(MAX_PENALTY, base * 2 ** min(max(count - 1, 0), 16))


def penalize(penalties: dict[str, Penalty], host_id: str, kind: str, at: datetime,
             message: str = "") -> dict[str, Penalty]:
    """Record a failure of ``kind`` on ``host_id`` at ``at``."""
    if not host_id:
        return penalties
    key = f"{host_id}/{kind}"
    old = penalties.get(key)
    count = old.count + 1 if old is not None and at <= old.until + FORGET else 1
    updated = dict(penalties)
    updated[key] = Penalty(host_id=host_id, kind=kind, until=at + penalty_for(kind, count), count=count,
                           last_message=message[:300])
    return updated


def avoided_hosts(penalties: dict[str, Penalty], now: datetime) -> frozenset[str]:
    """Hosts with a penalty still in force."""
    return frozenset(p.host_id for p in penalties.values() if p.until > now)


def severity(penalties: dict[str, Penalty], host_id: str, now: datetime) -> tuple[int, datetime]:
    """How bad a host's record is now (smaller is better): failures in force, then when the last one ends."""
    mine = [p for p in penalties.values() if p.host_id == host_id and p.until > now]
    return sum(p.count for p in mine), max((p.until for p in mine), default=now)


def expire(penalties: dict[str, Penalty], now: datetime) -> dict[str, Penalty]:
    """Drop penalties that ended long enough ago to be forgotten (keeps the view small)."""
    return {k: p for k, p in penalties.items() if p.until + FORGET > now}
