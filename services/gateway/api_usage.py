"""Usage: GPU hours and cost per UTC day and per instance state (the pool projection), and per user
(generations charged, from the generation projection): admins see everyone, users their own."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from services.gateway import schemas as s
from services.gateway import usage as u
from services.gateway.errors import validation_failed
from services.gateway.gen_access import account, scope
from services.gateway.resources import CLOCK, GEN_READS, POOL_READS
from services.gateway.routing import Call, Operation
from services.gateway.schemas import library as lib
from services.pool import view as pool_view

DEFAULT_DAYS = 30
MAX_DAYS = 3660


def _days(call: Call, q: s.UsageQuery | lib.UserUsageQuery) -> tuple[date, date]:
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
    return since, until


async def get_usage(call: Call) -> Any:
    """Settled usage plus running instances up to now, for a range of days; charged generations per user."""
    since, until = _days(call, call.query)
    now = call.app[CLOCK]()
    reads = call.app[POOL_READS]
    view = reads.view
    current = u.with_running(reads.usage, list(view.instances.values()), now)
    out = u.report(current, since, until)
    out["spend_rate_dph"] = round(pool_view.spend_rate(view), 6)
    out["by_user"] = u.by_user(call.app[GEN_READS].usage, since, until)
    return out


async def get_user_usage(call: Call) -> Any:
    """Your generations per day: how many, the instance and GPU hours they held, what they were charged."""
    q: lib.UserUsageQuery = call.query
    user_id = scope(call, q.user_id) or account(call)
    since, until = _days(call, q)
    reads = call.app[GEN_READS]
    await reads.settle()
    return u.user_report(reads.usage, user_id, since, until)


OPERATIONS = [
    Operation("GET", "/api/v1/usage", get_usage, "get_usage", "GPU hours and cost per day and per instance state",
              "usage", role="admin", query=s.UsageQuery, response=s.UsageReport,
              description="`by_user`: each account's charged generations in the range (null when there were none)."),
    Operation("GET", "/api/v1/usage/me", get_user_usage, "get_user_usage",
              "Your generations' GPU hours and cost per day", "usage", query=lib.UserUsageQuery,
              response=lib.UserUsageReport,
              description="GPU hours are the hours a generation held its instance times the instance's GPUs."),
]
