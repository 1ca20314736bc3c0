"""Incident review over the event streams: filtered pages of events, and views as they were at a point."""

from __future__ import annotations

from contextlib import aclosing
from datetime import UTC, datetime, timedelta

from nats.js import JetStreamContext

from libs.events import Recorded, codec, subjects
from libs.events.replay import Unreadable, replay
from services.gateway.pool_reads import GatewayPoolView, project_gateway
from services.gateway.schemas import EventItem, EventsQuery
from services.generation.domain import Job
from services.generation.view import JobsView
from services.generation.view import project as project_jobs
from services.pool.view import PoolView

# Time bounds apply to occurred_at; the server can only seek by the time it stored a message. Seek
# this much earlier and stop this much later, so a writer's clock may be off by up to this much.
STORE_SLACK = timedelta(hours=1)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def shifted(when: datetime, delta: timedelta) -> datetime:
    """``when + delta``, clamped to what datetime can hold (far-off bounds stay far off)."""
    try:
        return when + delta
    except OverflowError:
        return datetime.max.replace(tzinfo=UTC) if delta > timedelta(0) else EPOCH


CONTEXT_OF_STREAM = {stream: context for context, stream in subjects.EVENT_STREAMS.items()}


def trace_id(traceparent: str | None) -> str | None:
    """The trace id of a W3C traceparent (``00-<trace id>-<span id>-<flags>``)."""
    if not traceparent:
        return None
    parts = traceparent.split("-")
    return parts[1] if len(parts) >= 4 else None


def item_of(rec: Recorded | Unreadable, stream: str) -> EventItem:
    """An event (or an unreadable message) as the API lists it."""
    context = CONTEXT_OF_STREAM.get(stream, "")
    if isinstance(rec, Unreadable):
        try:
            agg = subjects.aggregate_of(rec.subject)
            agg_type, agg_id = agg.type, agg.id
        except ValueError:
            agg_type, agg_id = "", rec.subject
        return EventItem(id=None, type="Unreadable", context=context, aggregate=agg_id, aggregate_type=agg_type,
                         seq=rec.seq, stream=stream, error=f"{rec.error.kind}: {rec.error}")
    env = rec.envelope
    data = codec.to_builtins(env.event)
    data.pop("type", None)
    return EventItem(id=env.id, type=type(env.event).__name__, context=context, aggregate=env.aggregate_id,
                     aggregate_type=env.aggregate_type, aggregate_version=env.aggregate_version,
                     occurred_at=env.occurred_at, actor=env.actor, correlation_id=env.correlation_id,
                     causation_id=env.causation_id, trace_id=trace_id(env.traceparent), seq=rec.seq,
                     stream=rec.stream, data=data)


def filter_subject(q: EventsQuery) -> str:
    """The narrowest subject the server can filter on (aggregate filters are server-side)."""
    if q.aggregate_type and q.aggregate_id:
        return f"ev.{q.context}.{q.aggregate_type}.{q.aggregate_id}"
    if q.aggregate_type:
        return subjects.aggregates_of_type(q.context, q.aggregate_type)
    if q.aggregate_id:
        return f"ev.{q.context}.*.{q.aggregate_id}"
    return subjects.events_filter(q.context)


def matches(rec: Recorded | Unreadable, q: EventsQuery) -> bool:
    """The filters the server cannot apply: type, correlation id, actor, occurred-at window."""
    if isinstance(rec, Unreadable):
        return q.type in (None, "Unreadable") and q.correlation_id is None and q.actor is None
    env = rec.envelope
    if q.type is not None and type(env.event).__name__ != q.type:
        return False
    if q.correlation_id is not None and env.correlation_id != q.correlation_id:
        return False
    if q.actor is not None and env.actor != q.actor:
        return False
    if q.since is not None and env.occurred_at < q.since:
        return False
    return q.until is None or env.occurred_at <= q.until


async def page(js: JetStreamContext, q: EventsQuery) -> tuple[list[EventItem], int | None]:
    """One page of matching events after stream sequence ``q.after``, and the cursor of the next page."""
    stream = subjects.event_stream(q.context)
    since: datetime | int | None = q.after + 1 if q.after is not None else (
        shifted(q.since, -STORE_SLACK) if q.since is not None and q.since > EPOCH + STORE_SLACK else None)
    if isinstance(since, datetime) and since > shifted(datetime.now(UTC), STORE_SLACK):
        return [], None  # nothing can have been stored yet
    items: list[EventItem] = []
    until = shifted(q.until, STORE_SLACK) if q.until is not None else None
    reader = replay(js, stream, filter_subject(q), since=since, until=until)
    async with aclosing(reader):
        async for rec in reader:
            if matches(rec, q):
                items.append(item_of(rec, stream))
                if len(items) >= q.limit:
                    return items, rec.seq
    return items, None


class NotInHistory(Exception):
    """The event id was not found in any event stream."""


async def find_event(js: JetStreamContext, event_id: str) -> tuple[str, Recorded]:
    """The stream and record of an event id (a scan: incident review is rare and admin-only)."""
    for stream in subjects.EVENT_STREAMS.values():
        reader = replay(js, stream, ">")
        async with aclosing(reader):
            async for rec in reader:
                if isinstance(rec, Recorded) and rec.envelope.id == event_id:
                    return stream, rec
    raise NotInHistory(event_id)


async def pool_at(js: JetStreamContext, pool_id: str, *, event_id: str | None = None,
                  until: datetime | None = None) -> tuple[PoolView, int, Recorded | None, datetime]:
    """Fold the pool projection over the pool stream up to an event (inclusive) or a time.

    Returns the view, the last pool stream sequence folded, the target event (if one was
    named) and the moment the view describes. An event of another context bounds the fold
    by its time.
    """
    pool_stream = subjects.event_stream(subjects.POOL)
    target: Recorded | None = None
    last_seq: int | None = None
    if event_id is not None:
        stream, target = await find_event(js, event_id)
        if stream == pool_stream:
            last_seq = target.seq
        else:
            until = target.envelope.occurred_at
    cutoff = target.envelope.occurred_at if target is not None else until
    assert cutoff is not None
    view = GatewayPoolView(pool=PoolView(pool_id=pool_id))
    seq = 0
    reader = replay(js, pool_stream, subjects.events_filter(subjects.POOL),
                    until=last_seq if last_seq is not None else shifted(cutoff, STORE_SLACK))
    async with aclosing(reader):
        async for rec in reader:
            if isinstance(rec, Recorded) and (last_seq is not None or rec.envelope.occurred_at <= cutoff):
                view = project_gateway(view, rec)
            seq = rec.seq
    return view.pool, seq, target, cutoff


RECENT_JOBS = 100


async def jobs_at(js: JetStreamContext, cutoff: datetime, *, last_seq: int | None = None) -> list[Job]:
    """Fold the generation projection up to a generation stream sequence (inclusive) or a time.

    Returns the jobs queued or running at that point and the ``RECENT_JOBS`` most recently
    requested others, newest first.
    """
    view = JobsView()
    reader = replay(js, subjects.event_stream(subjects.GENERATION), subjects.events_filter(subjects.GENERATION),
                    until=last_seq if last_seq is not None else shifted(cutoff, STORE_SLACK))
    async with aclosing(reader):
        async for rec in reader:
            if isinstance(rec, Recorded) and (last_seq is not None or rec.envelope.occurred_at <= cutoff):
                project_jobs(view, rec)
    newest = sorted(view.job_seq, key=view.job_seq.__getitem__, reverse=True)
    active = [j for j in newest if not view.jobs[j].terminal]
    recent = [j for j in newest if view.jobs[j].terminal][:RECENT_JOBS]
    keep = set(active) | set(recent)
    return [view.jobs[j] for j in newest if j in keep]
