"""The gateway's own projection of the pool stream: the pool view (for reads) and usage, folded together."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

import msgspec
from nats.js import JetStreamContext

from libs.events import Recorded, codec, subjects
from libs.events import pool as ev
from libs.events.checkpoints import Checkpoint, KeyValueCheckpoints
from libs.events.projector import Listener, Projection, Projector
from services.gateway import usage as u
from services.pool.handlers import summary
from services.pool.view import PoolView, project

log = logging.getLogger("stoker.gateway")


class GatewayPoolView(msgspec.Struct, frozen=True, kw_only=True):
    """The pool view and the usage folded from the same events."""

    pool: PoolView = PoolView()
    usage: u.Usage = u.Usage()


def project_gateway(view: GatewayPoolView, rec: Recorded) -> GatewayPoolView:
    """Fold one pool event into both the pool view and usage (pure)."""
    pool = project(view.pool, rec)
    if rec.envelope.aggregate_type != ev.INSTANCE:
        return GatewayPoolView(pool=pool, usage=view.usage)
    key = rec.envelope.aggregate_id
    before, after = view.pool.instances.get(key), pool.instances.get(key)
    return GatewayPoolView(pool=pool, usage=u.fold(view.usage, before, after, rec.envelope.occurred_at))


class TolerantCheckpoints(KeyValueCheckpoints):
    """KV checkpoints that treat an unreadable one (an older view shape) as absent: rebuild, do not crash."""

    async def load(self, name: str, view_type: Any) -> Checkpoint[Any] | None:
        """The saved checkpoint, or None if there is none or it no longer decodes."""
        try:
            return await super().load(name, view_type)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            log.warning("checkpoint %s does not decode (%s); rebuilding from the stream", name, exc)
            return None


class PoolReads:
    """Follows the pool stream for one pool id; answers reads from memory."""

    def __init__(self, js: JetStreamContext, pool_id: str, clock: Callable[[], datetime], *,
                 checkpoints: bool = True) -> None:
        self._js = js
        self.pool_id = pool_id
        self.clock = clock
        projection = Projection(name=f"gateway-pool-{pool_id}", stream=subjects.event_stream(subjects.POOL),
                                filter_subject=subjects.events_filter(subjects.POOL),
                                initial=GatewayPoolView(pool=PoolView(pool_id=pool_id)), project=project_gateway,
                                view_type=GatewayPoolView)
        self._summaries: dict[Any, tuple[tuple[int, int, Any], bytes]] = {}
        self.projector: Projector[GatewayPoolView] = Projector(
            js, projection, checkpoints=TolerantCheckpoints(js) if checkpoints else None)

    @property
    def view(self) -> PoolView:
        """The current pool view."""
        return self.projector.view.pool

    @property
    def usage(self) -> u.Usage:
        """Settled usage so far."""
        return self.projector.view.usage

    @property
    def caught_up(self) -> bool:
        """True once the view includes every event that existed at start."""
        return self.projector.caught_up

    def listen(self, listener: Listener) -> None:
        """Call ``listener(pool view, recorded)`` after each applied event (a failing listener is logged)."""
        def call(view: GatewayPoolView, rec: Recorded) -> None:
            try:
                listener(view.pool, rec)
            except Exception:  # a listener bug must not stop the projection
                log.exception("pool listener failed on seq %d", rec.seq)

        self.projector.listen(call)

    def summary(self) -> dict[str, Any]:
        """The pool as the dashboard shows it, now."""
        return summary(self.view, self.clock())

    def summary_json(self, redact: Callable[[dict[str, Any]], dict[str, Any]] | None = None) -> bytes:
        """The summary, encoded; recomputed when the view changes or the clock enters a new second.

        Dashboards poll this; at most one computation per second and audience keeps it cheap,
        and uptimes and costs are never more than a second old.
        """
        now = self.clock()
        key = (self.projector.seq, int(now.timestamp()), redact)
        cached = self._summaries.get(redact)
        if cached is not None and cached[0] == key:
            return cached[1]
        data = summary(self.view, now)
        body = codec.encode(redact(data) if redact is not None else data)
        self._summaries[redact] = (key, body)
        return body

    async def start(self, catch_up_timeout: float = 30.0) -> None:
        """Resume and follow; wait (bounded) for the initial catch-up."""
        await self.projector.start()
        try:
            await self.projector.wait_caught_up(catch_up_timeout)
        except TimeoutError:
            log.warning("pool view still catching up after %.0f s; serving what it has", catch_up_timeout)

    async def settle(self, timeout: float = 2.0) -> None:
        """Read your own writes: wait (bounded) until the view includes the stream's current end."""
        with contextlib.suppress(Exception):
            info = await self._js.stream_info(subjects.event_stream(subjects.POOL))
            await self.projector.wait_for(info.state.last_seq, timeout)

    async def stop(self) -> None:
        """Stop following and save a checkpoint."""
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.projector.stop(), 5)
