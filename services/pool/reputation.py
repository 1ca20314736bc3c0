"""Host reputation: hosts that failed are avoided for a while, per kind of failure (pure)."""

from __future__ import annotations

from datetime import datetime, timedelta

import msgspec

# How long a failure keeps a host out of rentals.
PENALTY = {
    "extraction": timedelta(hours=24),
    "pull": timedelta(hours=6),
    "start": timedelta(hours=6),
    "probe_timeout": timedelta(hours=6),
    "vanished": timedelta(hours=12),
}


class Penalty(msgspec.Struct, frozen=True, kw_only=True):
    """A host's most recent failure of one kind."""

    host_id: str
    kind: str
    until: datetime
    count: int = 1
    last_message: str = ""


def penalize(penalties: dict[str, Penalty], host_id: str, kind: str, at: datetime,
             message: str = "") -> dict[str, Penalty]:
    """Record a failure of ``kind`` on ``host_id`` at ``at``."""
    if not host_id:
        return penalties
    key = f"{host_id}/{kind}"
    old = penalties.get(key)
    updated = dict(penalties)
    updated[key] = Penalty(host_id=host_id, kind=kind, until=at + PENALTY.get(kind, timedelta(hours=6)),
                           count=(old.count + 1) if old else 1, last_message=message[:300])
    return updated


def avoided_hosts(penalties: dict[str, Penalty], now: datetime) -> frozenset[str]:
    """Hosts with a penalty still in force."""
    return frozenset(p.host_id for p in penalties.values() if p.until > now)


def expire(penalties: dict[str, Penalty], now: datetime) -> dict[str, Penalty]:
    """Drop penalties that ended (keeps the view small)."""
    return {k: p for k, p in penalties.items() if p.until > now}
