"""Safety decisions taken while NATS was away, recorded as events once it is back.

When the pool cannot append (NATS down or restarting), the reconciler still acts on its last known
view: it terminates what must be terminated (safe mode, budget, failures, idle) and keeps the events
that say so here, one entry per aggregate, with event ids fixed at decision time. `flush` appends them
in order when NATS answers again: an id already stored is not stored twice, and an aggregate that
changed meanwhile drops its entry (the level-triggered planner decides it again from the new view).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

from libs.events import ConcurrencyError, Metadata, Position
from libs.events import pool as ev
from libs.events.base import Event
from libs.events.ids import new_id

from .writer import PoolWriter

log = logging.getLogger(__name__)
CONFIG = ""  # the key of the pool's config aggregate
# Decisions worth acting on without NATS: they stop spending. Everything else waits for NATS.
SAFETY_EVENTS = (ev.TerminateRequested, ev.Terminated, ev.SafeModeChanged)


def is_safety(events: Sequence[Event]) -> bool:
    """Whether a batch of decided events stops spending (and so is acted on while NATS is away)."""
    return any(isinstance(e, SAFETY_EVENTS) for e in events)


@dataclass
class Pending:
    """Events for one aggregate that could not be appended yet."""

    events: list[Event]
    expected: Position | None  # None for the config aggregate: appended at the view's position
    event_ids: list[str] = field(default_factory=list)


class Outbox:
    """Per aggregate (instance id, or CONFIG), the safety events still to append, oldest first."""

    def __init__(self) -> None:
        self._pending: dict[str, Pending] = {}

    def __len__(self) -> int:
        return len(self._pending)

    def __contains__(self, key: str) -> bool:
        return key in self._pending

    def add(self, key: str, events: Sequence[Event], expected: Position | None) -> bool:
        """Keep events for later; False if this aggregate already has a decision waiting."""
        if key in self._pending:
            return False
        self._pending[key] = Pending(list(events), expected, [new_id() for _ in events])
        return True

    async def flush(self, writer: PoolWriter, meta: Metadata) -> int:
        """Append what is waiting, in order; stop at the first failure. Returns how many were recorded."""
        recorded = 0
        for key in list(self._pending):
            item = self._pending[key]
            try:
                if key == CONFIG:
                    await writer.config(item.events, meta, event_ids=item.event_ids)
                else:
                    assert item.expected is not None
                    await writer.instance(key, item.events, item.expected, meta, event_ids=item.event_ids)
            except ConcurrencyError:
                log.info("decision for %s taken while NATS was away is stale; the next pass decides again",
                         key or "the pool config")
            except Exception as exc:  # still away: keep it and the rest, in order
                log.info("NATS still unavailable (%s); %d decision(s) wait", type(exc).__name__, len(self))
                return recorded
            else:
                recorded += 1
                log.info("recorded the decision for %s taken while NATS was away", key or "the pool config")
            del self._pending[key]
        return recorded
