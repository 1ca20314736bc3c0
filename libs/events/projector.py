"""Projectors: rebuild a view from a stream, follow it live, and checkpoint progress.

A view is folded by a pure ``project(view, recorded) -> view``. The checkpoint stores the
view together with the last stream sequence it includes, in one write, so a projector
killed at any point resumes exactly after what its checkpoint contains: nothing is lost
and nothing is applied twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any, Generic, NamedTuple, TypeVar

from nats.js import JetStreamContext

from . import codec
from .checkpoints import Checkpoint, Checkpoints
from .envelope import Recorded
from .quarantine import Quarantine
from .reader import nothing_pending, subscribe_ordered, to_delivery

log = logging.getLogger(__name__)

V = TypeVar("V")


class Projection(NamedTuple, Generic[V]):
    """What a projector folds: which messages, from what initial view, with which function."""

    name: str
    stream: str
    filter_subject: str
    initial: V
    project: Callable[[V, Recorded], V]
    view_type: Any


Listener = Callable[[Any, Recorded], None]


class Projector(Generic[V]):
    """Keeps ``view`` equal to the fold of every message of a projection seen so far."""

    def __init__(self, js: JetStreamContext, projection: Projection[V], *,
                 checkpoints: Checkpoints | None = None, checkpoint_every: int = 1000,
                 checkpoint_interval: float = 5.0, quarantine: Quarantine | None = None) -> None:
        self._js = js
        self.projection = projection
        self._checkpoints = checkpoints
        self._every = checkpoint_every
        self._interval = checkpoint_interval
        self.quarantine = quarantine or Quarantine(js, projection.name)
        self.view: V = projection.initial
        self.seq = 0
        self.applied = 0
        self._saved_seq = 0
        self._saved_at = time.monotonic()
        self._caught_up = asyncio.Event()
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._listeners: list[Listener] = []
        self._task: asyncio.Task[None] | None = None
        self._saving: asyncio.Task[None] | None = None
        self._sub: Any = None

    def listen(self, listener: Listener) -> None:
        """Call ``listener(view, recorded)`` after each applied event (for live updates)."""
        self._listeners.append(listener)

    async def start(self) -> None:
        """Resume from the checkpoint (if any) and follow the stream live."""
        if self._checkpoints is not None:
            saved = await self._checkpoints.load(self.projection.name, self.projection.view_type)
            if saved is not None:
                self.view, self.seq = saved.view, saved.seq
                self._saved_seq = saved.seq
        p = self.projection
        self._sub = await subscribe_ordered(self._js, p.stream, p.filter_subject, start_seq=self.seq + 1)
        if await nothing_pending(self._sub):
            self._caught_up.set()
        self._task = asyncio.create_task(self._run(), name=f"projector:{p.name}")

    async def _run(self) -> None:
        p = self.projection
        async for msg in self._sub.messages:
            delivery = to_delivery(msg)
            if delivery.seq <= self.seq:
                continue  # already in the view (redelivery after a consumer reset)
            try:
                envelope = codec.decode(delivery.data)
                record = Recorded(p.stream, delivery.subject, delivery.seq, envelope)
                self.view = p.project(self.view, record)
            except codec.DecodeError as exc:
                await self._poison(delivery.subject, delivery.seq, delivery.data, exc.kind, str(exc))
            except Exception as exc:  # a projection bug must not stop the projector
                await self._poison(delivery.subject, delivery.seq, delivery.data, "projection_error",
                                   f"{type(exc).__name__}: {exc}")
            else:
                self.applied += 1
                for listener in self._listeners:
                    listener(self.view, record)
            self.seq = delivery.seq
            if delivery.pending == 0 and not self._caught_up.is_set():
                self._caught_up.set()
                self._checkpoint_soon()
            elif self.seq - self._saved_seq >= self._every or (
                    time.monotonic() - self._saved_at >= self._interval and self.seq > self._saved_seq):
                self._checkpoint_soon()
            if self._waiters:
                self._wake()

    async def _poison(self, subject: str, seq: int, data: bytes, kind: str, error: str) -> None:
        await self.quarantine.put(stream=self.projection.stream, subject=subject, seq=seq, data=data,
                                  kind=kind, error=error)

    def _wake(self) -> None:
        still = []
        for seq, fut in self._waiters:
            if self.seq >= seq:
                if not fut.done():
                    fut.set_result(None)
            else:
                still.append((seq, fut))
        self._waiters = still

    def _checkpoint_soon(self) -> None:
        """Save in the background, so readers waiting on the view are not held up by the write."""
        if self._saving is not None and not self._saving.done():
            return
        self._saved_at = time.monotonic()
        self._saving = asyncio.create_task(self.checkpoint(), name=f"checkpoint:{self.projection.name}")

    async def checkpoint(self) -> None:
        """Save the view and its sequence now (no-op without a checkpoint store)."""
        self._saved_at = time.monotonic()
        if self._checkpoints is None or self.seq == self._saved_seq:
            return
        seq, view = self.seq, self.view  # one consistent snapshot: views are immutable
        await self._checkpoints.save(self.projection.name, Checkpoint(seq, view))
        self._saved_seq = max(self._saved_seq, seq)

    async def wait_caught_up(self, timeout: float = 30.0) -> None:
        """Wait until the view includes every message that existed at start."""
        await asyncio.wait_for(self._caught_up.wait(), timeout)

    async def wait_for(self, seq: int, timeout: float = 10.0) -> None:
        """Wait until the view includes stream sequence ``seq`` (read your own writes)."""
        if self.seq >= seq:
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((seq, fut))
        await asyncio.wait_for(fut, timeout)

    @property
    def caught_up(self) -> bool:
        """True once the initial replay finished."""
        return self._caught_up.is_set()

    async def stop(self, *, checkpoint: bool = True) -> None:
        """Stop following; save a final checkpoint unless told not to."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._saving is not None:
            if not checkpoint:
                self._saving.cancel()  # a crash: an unfinished save may or may not have landed
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._saving
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()
        if checkpoint:
            await self.checkpoint()
