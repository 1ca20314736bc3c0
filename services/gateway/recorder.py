"""Appending the gateway's own events (accounts context) with the house's checked writes."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from libs.events import (
    NEW,
    Aggregate,
    ConcurrencyError,
    Metadata,
    Position,
    Recorded,
    codec,
    subjects,
)
from libs.events.base import Event
from libs.events.ids import new_id
from libs.events.store import EventStore
from services.gateway.dependencies import Unavailable

ATTEMPTS = 8


class EventRecorder:
    """Appends events after an aggregate's current end, reloading and retrying on a concurrent write.

    The gateway's accounts events only ever extend an aggregate (nothing is decided on a
    stale view), so the position is read cheaply from the subject's last message.
    """

    def __init__(self, js: JetStreamContext, store: EventStore, connected: Callable[[], bool] = lambda: True) -> None:
        self._js = js
        self._store = store
        self._connected = connected

    async def position(self, aggregate: Aggregate) -> Position:
        """Version and stream sequence of the aggregate's last event (NEW when it has none)."""
        stream = subjects.event_stream(aggregate.context)
        try:
            last = await self._js.get_last_msg(stream, subjects.aggregate_subject(aggregate))
        except NotFoundError:
            return NEW
        assert last.seq is not None and last.data is not None
        return Position(codec.decode(last.data).aggregate_version, last.seq)

    async def record(self, aggregate: Aggregate, events: Sequence[Event], meta: Metadata) -> list[Recorded]:
        """Append ``events`` to ``aggregate`` (atomically), retrying if another writer got there first."""
        if not self._connected():
            raise Unavailable("nats")  # at once, rather than after the JetStream timeout
        ids = [new_id() for _ in events]  # the same ids on every attempt: a resent event is stored once
        for attempt in range(ATTEMPTS):
            position = await self.position(aggregate)
            try:
                recorded = await self._store.append(aggregate, events, position, meta, event_ids=ids)
            except ConcurrencyError:
                if attempt == ATTEMPTS - 1:
                    raise
                continue
            return recorded
        raise AssertionError("unreachable")
