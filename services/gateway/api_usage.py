"""Usage: GPU hours and cost per UTC day and per instance state, from the gateway's pool projection."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from services.gateway import schemas as s
from services.gateway import usage as u
from services.gateway.errors import validation_failed
from services.gateway.resources import CLOCK, POOL_READS
from services.gateway.routing import Call, Operation
from services.pool import view as pool_view

DEFAULT_DAYS = 30
MAX_DAYS = 3660


async def get_usage(call: Call) -> Any:
    """Settled usage plus running instances up to now, for a range of days."""
    q: s.UsageQuery = call.query
    now = call.app[CLOCK]()
    until = q.until or now.date()
    try:
        since = q.since or until - timedelta(days=DEFAULT_DAYS - 1)
    except OverflowError:
        raise validation_failed("until is too early") from None
    if since > until:
        raise validation_failed("since is after until")
    if (until - since).days > MAX_DAYS:
        raise validation_failed(f"at most {MAX_DAYS} days at a time")
    reads = call.app[POOL_READS]
    view = reads.view
    current = u.with_running(reads.usage, list(view.instances.values()), now)
    out = u.report(current, since, until)
    out["spend_rate_dph"] = round(pool_view.spend_rate(view), 6)
    out["by_user"] = None  # per-user usage arrives with the generation service
    return out


OPERATIONS = [
    Operation("GET", "/api/v1/usage", get_usage, "get_usage", "GPU hours and cost per day and per instance state",
              "usage", role="admin", query=s.UsageQuery, response=s.UsageReport),
]
