"""Incident review: filtered, paginated events from the streams, and the views as they were at a point."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from libs.events import subjects
from services.gateway import history
from services.gateway import schemas as s
from services.gateway.errors import ApiError, validation_failed
from services.gateway.gen_views import generation_of_job
from services.gateway.resources import CONFIG, JS
from services.gateway.routing import Call, Operation, require_nats
from services.pool.handlers import summary

EVENT_ID = re.compile(r"^[A-Za-z0-9_\-:]{1,64}$")


async def list_events(call: Call) -> Any:
    """A page of events of one context, oldest first; ``next`` is the stream sequence to continue after."""
    require_nats(call.app)
    q: s.EventsQuery = call.query
    if q.since is not None and q.until is not None and q.since > q.until:
        raise validation_failed("since is after until")
    items, next_seq = await history.page(call.app[JS], q)
    return s.EventsPage(items=items, next=next_seq)


def _when(raw: str) -> datetime | None:
    try:
        when = datetime.fromisoformat(raw.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return None
    if when.tzinfo is None:
        raise validation_failed("a time in 'at' needs a UTC offset (e.g. 2024-05-01T12:00:00Z)")
    try:
        return when.astimezone(UTC)
    except OverflowError:
        raise validation_failed("'at' is out of range") from None


async def state_at(call: Call) -> Any:
    """Fold the pool and generation projections over a replay up to an event id (inclusive) or an RFC 3339 time."""
    require_nats(call.app)
    raw = call.query.at
    when = _when(raw)
    if when is None and not EVENT_ID.match(raw):
        raise validation_failed("'at' must be an event id or an RFC 3339 time")
    try:
        view, seq, target, moment = await history.pool_at(call.app[JS], call.app[CONFIG].pool_id,
                                                          event_id=None if when else raw, until=when)
    except history.NotInHistory:
        raise ApiError(404, "NOT_FOUND", f"no event {raw} in the event streams") from None
    event = history.item_of(target, target.stream) if target is not None else None
    in_gen = target is not None and target.stream == subjects.event_stream(subjects.GENERATION)
    jobs = await history.jobs_at(call.app[JS], moment, last_seq=target.seq if in_gen and target else None)
    return {"at": moment, "seq": seq, "event": event, "pool": summary(view, moment),
            "jobs": [generation_of_job(job) for job in jobs]}


OPERATIONS = [
    Operation("GET", "/api/v1/events", list_events, "list_events", "Events of one context, filtered and paginated",
              "history", role="admin", query=s.EventsQuery, response=s.EventsPage),
    Operation("GET", "/api/v1/state", state_at, "state_at", "The pool and jobs as after an event or at a time",
              "history", role="admin", query=s.StateQuery, response=s.StateAt, errors=(404,)),
]
