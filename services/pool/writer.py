"""Writing pool events: checked appends, then wait until our own projection has them."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from libs.events import Aggregate, Metadata, Position, Recorded, subjects
from libs.events import pool as ev
from libs.events.projector import Projector
from libs.events.store import EventStore

from .view import PoolView


class PoolWriter:
    """Appends to pool aggregates and keeps the local view read-your-writes consistent."""

    def __init__(self, store: EventStore, projector: Projector[PoolView],
                 on_append: Callable[[Sequence[ev.Event]], None] | None = None) -> None:
        self.store = store
        self.projector = projector
        self._on_append = on_append  # metrics: what this replica decided

    @property
    def view(self) -> PoolView:
        """The current view."""
        return self.projector.view

    async def instance(self, instance_id: str, events: Sequence[ev.Event], expected: Position,
                       meta: Metadata, event_ids: Sequence[str] | None = None) -> list[Recorded]:
        """Append to one instance aggregate (ConcurrencyError when ``expected`` is stale)."""
        agg = Aggregate(subjects.POOL, ev.INSTANCE, instance_id)
        return await self._append(agg, events, expected, meta, event_ids)

    async def config(self, events: Sequence[ev.Event], meta: Metadata,
                     event_ids: Sequence[str] | None = None) -> list[Recorded]:
        """Append to the pool's config aggregate at the view's current config position."""
        agg = Aggregate(subjects.POOL, ev.CONFIG, self.view.pool_id)
        return await self._append(agg, events, self.view.config_position, meta, event_ids)

    async def _append(self, agg: Aggregate, events: Sequence[ev.Event], expected: Position, meta: Metadata,
                      event_ids: Sequence[str] | None) -> list[Recorded]:
        if not events:
            return []
        recorded = await self.store.append(agg, events, expected, meta, event_ids=event_ids)
        if self._on_append is not None:
            self._on_append(events)
        await self.projector.wait_for(recorded[-1].seq)
        return recorded
