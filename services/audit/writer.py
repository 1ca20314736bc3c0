"""The single writer: batches from every stream become chained records, committed with their cursors.

Fetchers ``enqueue`` contiguous messages and wait on the returned future. Two stages overlap:
the preparer decodes, redacts and chains the next batch on the predicted head (pure CPU) while
the committer writes the previous one (COPY + cursors + head in one transaction). The
committer trusts nothing: if the stored head or cursors are not what a prepared batch was
built on, it rebuilds the batch first. On a database failure it keeps the batch, backs off and
retries, reloading the chain state, so nothing is lost or written twice.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import NamedTuple

import asyncpg

from libs.events.quarantine import Quarantine
from libs.events.store import utc_now
from services.audit import repository
from services.audit.chain import Keyring
from services.audit.domain import GENESIS, Fact, Head, Message, Row, advance, build, describe, duplicate
from services.audit.repository import HeadMoved
from services.audit.spans import write_spans

log = logging.getLogger("stoker.audit")

DB_ERRORS = (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, asyncpg.InternalClientError,
             TimeoutError)
MAX_BACKOFF = 2.0
SLICE = 500  # records prepared between yields to the event loop


class Submitted(NamedTuple):
    """One fetcher's contiguous messages and the future it waits on."""

    stream: str
    messages: Sequence[Message]
    done: asyncio.Future[None]


class Prepared(NamedTuple):
    """A batch chained onto ``base`` (and ``base_cursors``): its rows and the state after it."""

    items: list[Submitted]
    facts: list[Fact]
    todo: list[Fact]
    rows: list[Row]
    base: Head
    base_cursors: dict[str, int]
    head: Head
    cursors: dict[str, int]


class Writer:
    """Owns the chain head and the stream cursors; the only code that appends records."""

    def __init__(self, pool: asyncpg.Pool, keyring: Keyring, *, secrets: frozenset[str] = frozenset(),
                 quarantine: Quarantine | None = None, clock: Callable[[], datetime] = utc_now,
                 max_records: int = 5000, on_commit: Callable[[list[Fact]], None] | None = None,
                 on_write: Callable[[float, int], None] | None = None) -> None:
        self._pool = pool
        self._keyring = keyring
        self._secrets = secrets
        self._quarantine = quarantine
        self._clock = clock
        self._max = max_records
        self._on_commit = on_commit
        self._on_write = on_write  # metrics: seconds and records of each committed batch
        self._queue: asyncio.Queue[Submitted | None] = asyncio.Queue()
        self.head: Head = GENESIS  # committed
        self.cursors: dict[str, int] = {}  # committed
        self._tip: tuple[Head, dict[str, int]] = (GENESIS, {})  # predicted, after what is prepared
        self._stale = True
        self.failures = 0
        self.written = 0

    def load(self, state: repository.ChainState) -> None:
        """Adopt the stored chain state."""
        if state.head.seq < self.head.seq:
            log.error("audit head moved back from seq %d to %d: records were removed outside the service; "
                      "`stoker audit verify` will report it", self.head.seq, state.head.seq)
        self.head, self.cursors = state.head, dict(state.cursors)
        self._tip = (self.head, dict(self.cursors))
        self._stale = False

    def cursor(self, stream: str) -> int:
        """The last committed sequence of a stream."""
        return self.cursors.get(stream, 0)

    def enqueue(self, stream: str, messages: Sequence[Message]) -> asyncio.Future[None]:
        """Queue contiguous messages of one stream; the future resolves once they are committed."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(Submitted(stream, messages, fut))
        return fut

    async def submit(self, stream: str, messages: Sequence[Message]) -> None:
        """Queue contiguous messages of one stream and wait until they are committed."""
        await self.enqueue(stream, messages)

    async def stop(self) -> None:
        """Finish what is queued, then stop ``run``."""
        await self._queue.put(None)

    # -- stage 1: prepare ---------------------------------------------------------------------------

    async def run(self) -> None:
        """Prepare and commit queued batches until ``stop``."""
        prepared: asyncio.Queue[Prepared | None] = asyncio.Queue(maxsize=1)
        committer = asyncio.create_task(self._commit_loop(prepared), name="audit-committer")
        try:
            while (batch := await self._take()) is not None:
                await prepared.put(await self._prepare_stepwise(batch))
            await prepared.put(None)
            await committer
        finally:
            if not committer.done():
                committer.cancel()
                await asyncio.gather(committer, return_exceptions=True)
            self._cancel_waiting()

    async def _take(self) -> list[Submitted] | None:
        first = await self._queue.get()
        if first is None:
            return None
        batch, count = [first], len(first.messages)
        while count < self._max and not self._queue.empty():
            item = self._queue.get_nowait()
            if item is None:
                self._queue.put_nowait(None)
                break
            batch.append(item)
            count += len(item.messages)
        return batch

    async def _prepare_stepwise(self, items: list[Submitted]) -> Prepared:
        """Describe and chain a batch in slices, yielding between them so the COPY in flight keeps
        streaming to PostgreSQL (which works on another core) while this one is built."""
        messages = [m for item in items for m in item.messages]
        facts: list[Fact] = []
        for i in range(0, len(messages), SLICE):
            facts += [describe(m, self._secrets) for m in messages[i:i + SLICE]]
            await asyncio.sleep(0)
        base, cursors = self._tip
        todo = _unique_ids([f for f in facts if f.stream_seq > cursors.get(f.stream, 0)])
        rows: list[Row] = []
        head = base
        now = self._clock()
        for i in range(0, len(todo), SLICE):
            part, head = build(head, todo[i:i + SLICE], self._keyring, now)
            rows += part
            await asyncio.sleep(0)
        after = advance(cursors, todo)
        if self._tip[0] is base:  # unless the committer rebuilt meanwhile (then it rebuilds this too)
            self._tip = (head, after)
        return Prepared(items, facts, todo, rows, base, dict(cursors), head, after)

    def _prepare(self, items: list[Submitted], facts: list[Fact], base: Head, cursors: dict[str, int],
                 renamed: frozenset[str] = frozenset()) -> Prepared:
        """Chain what is new (after ``cursors``) onto ``base``; move the predicted tip past it."""
        todo = _unique_ids([duplicate(f) if f.event_id in renamed else f
                            for f in facts if f.stream_seq > cursors.get(f.stream, 0)])
        rows, head = build(base, todo, self._keyring, self._clock())
        after = advance(cursors, todo)
        self._tip = (head, after)
        return Prepared(items, facts, todo, rows, base, dict(cursors), head, after)

    def _cancel_waiting(self) -> None:
        while not self._queue.empty():
            item = self._queue.get_nowait()
            if item is not None and not item.done.done():
                item.done.cancel()

    # -- stage 2: commit ------------------------------------------------------------------------------

    async def _commit_loop(self, prepared: asyncio.Queue[Prepared | None]) -> None:
        while (p := await prepared.get()) is not None:
            started = time.perf_counter()
            try:
                with write_spans(p.todo):
                    written = await self._commit(p)
            except asyncio.CancelledError:
                for item in p.items:
                    if not item.done.done():
                        item.done.cancel()
                raise
            for item in p.items:
                if not item.done.done():
                    item.done.set_result(None)
            if self._on_write is not None:
                self._on_write(time.perf_counter() - started, len(written))
            await self._after_commit(written)

    async def _commit(self, p: Prepared) -> list[Fact]:
        backoff = 0.05
        while True:
            try:
                async with self._pool.acquire() as conn:
                    try:
                        return await self._commit_on(conn, p)
                    except Exception:
                        conn.terminate()  # its state is unknown (the server went away mid-COMMIT?): never reuse
                        raise
            except HeadMoved as exc:
                log.error("audit chain head changed under the writer (%s): reloading", exc)
            except Exception as exc:  # keep the batch and retry: the audit must not stop or skip
                self.failures += 1
                if isinstance(exc, DB_ERRORS):
                    log.warning("audit write failed (%s: %s); retrying in %.2fs", type(exc).__name__, exc, backoff)
                else:
                    log.exception("audit write failed unexpectedly; retrying in %.2fs", backoff)
            self._stale = True
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, MAX_BACKOFF)

    async def _commit_on(self, conn: asyncpg.Connection, p: Prepared) -> list[Fact]:
        if self._stale:
            state = await repository.load_state(conn)
            if state is None:
                raise RuntimeError("the audit chain was not created (migrations not applied?)")
            self.load(state)
        renamed: frozenset[str] = frozenset()
        while True:
            if p.base != self.head or p.base_cursors != self.cursors:
                p = self._prepare(p.items, p.facts, self.head, self.cursors, renamed)  # built on a stale tip
            try:
                await repository.append(conn, p.rows, _changed(p.base_cursors, p.cursors), p.base, p.head)
            except asyncpg.UniqueViolationError:
                taken = await repository.existing_event_ids(conn, [f.event_id for f in p.todo])
                if not taken - renamed:
                    raise HeadMoved("a record this service did not write holds the next sequence") from None
                log.warning("%d event id(s) already recorded (reused by a producer): recorded as duplicates",
                            len(taken - renamed))
                renamed |= taken
                p = self._prepare(p.items, p.facts, self.head, self.cursors, renamed)
                continue
            self.head, self.cursors = p.head, p.cursors
            self.written += len(p.rows)
            return p.todo

    async def _after_commit(self, facts: list[Fact]) -> None:
        if self._quarantine is not None:
            for f in facts:
                if f.error is not None:
                    try:
                        await self._quarantine.put(stream=f.stream, subject=f.subject, seq=f.stream_seq,
                                                   data=f.data, kind=f.error.kind, error=str(f.error))
                    except Exception as exc:  # the record is kept; a lost quarantine copy must not stop audit
                        log.warning("could not quarantine %s seq %d: %s", f.stream, f.stream_seq, exc)
        if self._on_commit is not None:
            self._on_commit(facts)


def _changed(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {s: q for s, q in after.items() if q != before.get(s)}


def _unique_ids(facts: list[Fact]) -> list[Fact]:
    """Within one batch, a reused event id is recorded once as itself, then as duplicates."""
    seen: set[str] = set()
    out = []
    for f in facts:
        if f.event_id in seen:
            f = duplicate(f)
        seen.add(f.event_id)
        out.append(f)
    return out
