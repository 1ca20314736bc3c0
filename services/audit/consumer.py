"""One durable pull consumer per event stream, feeding the writer in stream order.

The database cursor is the truth: at start the durable is recreated to deliver from the
cursor + 1, so messages a previous process left unacknowledged cannot arrive out of order.
Each fetched batch is trimmed to what is after the cursor, checked for holes (a real gap in
the stream is fine, a message delivered out of order forces a resync), committed, then acked.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import Any

import nats.errors
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError

from services.audit.domain import Message, fresh
from services.audit.writer import Writer

log = logging.getLogger("stoker.audit")

ACK_WAIT = 120.0  # longer than a database outage the writer rides out in memory
FETCH_TIMEOUT = 1.0
MAX_BACKOFF = 2.0
IN_FLIGHT = 2  # batches handed to the writer before waiting for the oldest (lets the writer pipeline)


def _resolved() -> asyncio.Future[None]:
    fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    fut.set_result(None)
    return fut


def consumer_config(durable: str, cursor: int, batch: int) -> ConsumerConfig:
    """A durable that delivers every message after ``cursor``; acking one acks all before it."""
    return ConsumerConfig(durable_name=durable, name=durable, ack_policy=AckPolicy.ALL, ack_wait=ACK_WAIT,
                          max_deliver=-1, max_ack_pending=max(4 * batch, 1000),
                          description="stoker audit: every event, recorded once",
                          deliver_policy=DeliverPolicy.BY_START_SEQUENCE if cursor else DeliverPolicy.ALL,
                          opt_start_seq=cursor + 1 if cursor else None)


def to_message(stream: str, msg: Msg) -> Message:
    """The position facts of a delivered message."""
    meta = msg.metadata
    return Message(stream, msg.subject, meta.sequence.stream, meta.timestamp, msg.data)


class StreamFeed:
    """Fetches one stream's messages and hands them to the writer in order."""

    def __init__(self, js: JetStreamContext, stream: str, durable: str, writer: Writer, *, batch: int = 1000) -> None:
        self._js = js
        self.stream = stream
        self.durable = durable
        self._writer = writer
        self._batch = batch
        self._sub: Any = None
        self.resyncs = 0
        self._inflight: deque[tuple[asyncio.Future[None], Msg]] = deque()
        self._handed = 0  # the last sequence handed to the writer (committed or not)
        self.pending = 0  # messages the stream holds beyond the last fetch (from delivery metadata)

    async def close(self) -> None:
        """Drop the pull subscription (the durable stays; the next start recreates it from the cursor)."""
        if self._sub is not None:
            try:
                await self._sub.unsubscribe()
            except Exception as exc:  # the old subscription may already be gone with its connection
                log.debug("audit: dropping the %s subscription: %s", self.stream, exc)
            self._sub = None

    async def open(self) -> None:
        """(Re)create the durable to deliver from the writer's cursor + 1, and bind to it."""
        await self.close()
        cursor = self._writer.cursor(self.stream)
        self._handed = cursor
        try:
            await self._js.delete_consumer(self.stream, self.durable)
        except NotFoundError:
            pass
        await self._js.add_consumer(self.stream, consumer_config(self.durable, cursor, self._batch))
        self._sub = await self._js.pull_subscribe_bind(self.durable, self.stream)
        log.info("audit consumer %s on %s delivers from seq %d", self.durable, self.stream, cursor + 1)

    async def run(self, stopping: asyncio.Event) -> None:
        """Fetch, check, hand over, ack once committed, until ``stopping`` is set."""
        backoff = 0.1
        while not stopping.is_set():
            try:
                if self._sub is None:
                    await self._settle()
                    await self.open()
                msgs = await self._sub.fetch(self._batch, timeout=FETCH_TIMEOUT)
            except (nats.errors.TimeoutError, TimeoutError):
                self.pending = 0
                await self._settle()
                continue
            except (nats.errors.Error, OSError) as exc:
                log.warning("audit fetch from %s failed (%s); retrying in %.1fs", self.stream, exc, backoff)
                await self.close()
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF)
                continue
            if not msgs:  # a fetch can end empty (e.g. the consumer was replaced under it)
                continue
            try:
                await self._handle(msgs)
            except asyncio.CancelledError:
                raise
            except Exception:  # never let one bad batch stop the audit: resync from the cursor
                log.exception("audit: handling a batch from %s failed; resyncing", self.stream)
                await self.close()
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF)
                continue
            backoff = 0.1
        await self._settle()  # stopping: what was handed over is committed by the writer, then acked

    async def _settle(self, keep: int = 0) -> None:
        """Wait for handed-over batches to commit (all but ``keep``), acking each."""
        while len(self._inflight) > keep:
            done, last = self._inflight.popleft()
            await done
            try:
                await last.ack()  # AckPolicy.ALL: everything up to it
            except nats.errors.Error as exc:  # redelivered later and skipped as already applied
                log.debug("audit ack on %s failed: %s", self.stream, exc)

    async def _handle(self, msgs: list[Msg]) -> None:
        messages = [to_message(self.stream, m) for m in msgs]
        self.pending = msgs[-1].metadata.num_pending
        after = max(self._writer.cursor(self.stream), self._handed)
        todo = fresh(after, messages)
        if todo and not await self._contiguous(after, todo):
            self.resyncs += 1
            await self._settle()
            log.warning("audit: %s delivered out of order after seq %d; resyncing the consumer",
                        self.stream, self._writer.cursor(self.stream))
            await self.close()  # reopened from the cursor on the next loop
            return
        last = max(msgs, key=lambda m: m.metadata.sequence.stream)
        done: asyncio.Future[None] = self._writer.enqueue(self.stream, todo) if todo else _resolved()
        if todo:
            self._handed = todo[-1].seq
        self._inflight.append((done, last))
        await self._settle(keep=IN_FLIGHT - 1)

    async def _contiguous(self, after: int, todo: list[Message]) -> bool:
        """True if ``todo`` follows ``after`` with no hole, or only holes the stream itself has."""
        expected = after + 1
        for m in todo:
            if m.seq != expected and await self._next_stored(expected) != m.seq:
                return False
            expected = m.seq + 1
        return True

    async def _next_stored(self, seq: int) -> int | None:
        """The first sequence >= seq the stream still holds."""
        try:
            found = await self._js.get_msg(self.stream, seq, subject=">", next=True)
        except NotFoundError:
            return None
        return found.seq
