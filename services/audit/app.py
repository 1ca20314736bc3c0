"""The audit service shell: connect, migrate, consume every event stream, anchor, prune, drain on stop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from datetime import datetime, timedelta

import asyncpg
import nats
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from libs import natsconn
from libs.events import streams, subjects
from libs.events.audit import CHAIN
from libs.events.quarantine import Quarantine
from libs.events.store import utc_now
from libs.observability import logs
from services.audit import repository
from services.audit.anchor import Anchors, anchor_event, origin_checkpoint, pruned_checkpoint, pruned_event
from services.audit.config import AuditConfig, ConfigError
from services.audit.consumer import StreamFeed
from services.audit.domain import Fact, anchor_due
from services.audit.metrics import AuditMetrics
from services.audit.reads import AuditReads
from services.audit.writer import DB_ERRORS, Writer

log = logging.getLogger("stoker.audit")
STOP_TIMEOUT = 10.0
CHECKPOINT_SUBJECTS = f"ev.{subjects.AUDIT}.{CHAIN}."


async def _quiet(exc: Exception) -> None:
    log.debug("nats: %s", exc)


class AuditService:
    """Records every event of the configured streams into the audit chain."""

    def __init__(self, config: AuditConfig, *, clock: Callable[[], datetime] = utc_now) -> None:
        self.config = config
        self._clock = clock
        self.nc: NatsClient | None = None
        self.js: JetStreamContext | None = None
        self.pool: asyncpg.Pool | None = None
        self.reads_pool: asyncpg.Pool | None = None
        self.reads: AuditReads | None = None
        self.writer: Writer | None = None
        self.anchors: Anchors | None = None
        self.feeds: list[StreamFeed] = []
        self._stopping = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._writer_task: asyncio.Task[None] | None = None
        self._since_anchor = 0
        self._anchored_at = time.monotonic()
        self._anchored_seq = 0
        self._anchor_wake = asyncio.Event()
        self._stopped = False
        self.metrics = AuditMetrics()
        self.metrics.watch(lambda: self.writer, self.lag)

    # -- start ----------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Connect, migrate (waiting for PostgreSQL), and start consuming."""
        cfg = self.config
        self.nc = await natsconn.connect(cfg.nats_url, name="stoker-audit", max_reconnect_attempts=-1,
                                         reconnect_time_wait=0.5, error_cb=_quiet)
        self.js = self.nc.jetstream(timeout=10)
        await streams.ensure_streams(self.js, self.config.stream_replicas)
        self.anchors = Anchors(self.js, cfg.chain)
        state = await self._open_database()
        assert self.pool is not None
        self.writer = Writer(self.pool, cfg.keyring, secrets=cfg.secrets,
                             quarantine=Quarantine(self.js, cfg.durable), clock=self._clock,
                             max_records=max(cfg.batch * 4, 1000), on_commit=self._committed,
                             on_write=self.metrics.written)
        self.writer.load(state)
        self._anchored_seq = state.head.seq
        self._writer_task = asyncio.create_task(self.writer.run(), name="audit-writer")
        for name in cfg.streams:
            feed = StreamFeed(self.js, name, cfg.durable, self.writer, batch=cfg.batch)
            await feed.open()
            self.feeds.append(feed)
            self._tasks.append(asyncio.create_task(feed.run(self._stopping), name=f"audit-feed:{name}"))
        self._tasks.append(asyncio.create_task(self._anchor_loop(), name="audit-anchors"))
        self._tasks.append(asyncio.create_task(self._prune_loop(), name="audit-prune"))
        # Queries and verification over NATS (libs.contracts.audit): the gateway holds neither key nor tables.
        self.reads_pool = await repository.create_pool(cfg.database_url, cfg.app_role or None, max_size=2)
        self.reads = AuditReads(self.nc, self.js, self.reads_pool, cfg.chain, keys=cfg)
        await self.reads.start()
        log.info("audit chain %r at seq %d, consuming %s", cfg.chain, state.head.seq, ", ".join(cfg.streams))

    async def _open_database(self) -> repository.ChainState:
        """Migrate and create the chain (as the DSN's owner), then open the restricted pool; retry while down."""
        cfg = self.config
        backoff = 0.2
        while True:
            try:
                owner = await asyncpg.connect(cfg.database_url, timeout=10)
                try:
                    await repository.migrate(owner)
                    state = await repository.load_state(owner)
                    if state is None:
                        origin = origin_checkpoint(cfg.keyring, cfg.chain, await self._origin_cursors(), cfg.start)
                        await repository.create_chain(owner, cfg.chain, origin, self._clock())
                        state = await repository.load_state(owner)
                        assert state is not None
                finally:
                    await owner.close()
                break
            except DB_ERRORS as exc:
                log.warning("audit database unavailable (%s); retrying in %.1fs", logs.describe(exc), backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
        if state.chain != cfg.chain:
            raise ConfigError(f"this database holds audit chain {state.chain!r}, not {cfg.chain!r}")
        self.pool = await repository.create_pool(cfg.database_url, cfg.app_role or None)
        return state

    async def _origin_cursors(self) -> dict[str, int]:
        """Where a new chain starts: nothing skipped ("all"), or each stream's current end ("new")."""
        if self.config.start == "all":
            return {}
        assert self.js is not None
        cursors = {}
        for name in self.config.streams:
            try:
                cursors[name] = (await self.js.stream_info(name)).state.last_seq
            except NotFoundError:
                cursors[name] = 0
        return cursors

    # -- anchoring and pruning ----------------------------------------------------------------------------

    def _committed(self, facts: list[Fact]) -> None:
        # Checkpoint events (of any chain) do not call for an anchor: anchoring them would loop.
        self._since_anchor += sum(1 for f in facts if not f.subject.startswith(CHECKPOINT_SUBJECTS))
        if self._since_anchor >= self.config.anchor_every:
            self._anchor_wake.set()

    async def anchor_now(self) -> bool:
        """Publish an anchor of the committed head if it moved since the last one."""
        assert self.writer is not None and self.anchors is not None
        head, cursors = self.writer.head, dict(self.writer.cursors)
        if head.seq <= self._anchored_seq:
            return False
        self._since_anchor = 0
        self._anchored_at = time.monotonic()
        await self.anchors.publish(anchor_event(self.config.keyring, self.config.chain, head, cursors))
        self._anchored_seq = head.seq
        return True

    async def _anchor_loop(self) -> None:
        cfg = self.config
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._anchor_wake.wait(), min(1.0, cfg.anchor_seconds))
            self._anchor_wake.clear()
            if anchor_due(self._since_anchor, time.monotonic() - self._anchored_at, cfg.anchor_every,
                          cfg.anchor_seconds):
                try:
                    await self.anchor_now()
                except Exception as exc:  # NATS down: the next tick tries again
                    log.warning("audit anchor failed: %s", exc)

    async def prune_once(self, now: datetime | None = None) -> int:
        """Remove records older than the retention period, behind a signed checkpoint; return how many."""
        assert self.pool is not None and self.anchors is not None
        cfg = self.config
        cutoff = (now or self._clock()) - timedelta(days=cfg.retention_days)
        async with self.pool.acquire() as conn:
            plan = await repository.prune_plan(conn, cutoff)
        if plan is None:
            return 0
        cp = pruned_checkpoint(cfg.keyring, cfg.chain, plan.seq, plan.hash, plan.hmac, plan.cursors, cutoff,
                               plan.records)
        await self.anchors.publish(pruned_event(cfg.chain, cp, cutoff, plan.records))  # evidence outside first
        owner = await asyncpg.connect(cfg.database_url, timeout=10)
        try:
            deleted = await repository.prune(owner, cp)
        finally:
            await owner.close()
        log.info("audit retention: pruned %d records through seq %d (recorded before %s)", deleted, plan.seq,
                 cutoff.isoformat())
        return deleted

    async def _prune_loop(self) -> None:
        if self.config.retention_days <= 0:
            return  # retention disabled: keep everything
        while True:
            await asyncio.sleep(self.config.prune_interval)
            try:
                await self.prune_once()
            except Exception as exc:  # retried next interval
                log.warning("audit pruning failed: %s", exc)

    # -- progress and stop ------------------------------------------------------------------------------

    async def lag(self) -> dict[str, int]:
        """Per stream: messages stored beyond the applied cursor."""
        assert self.js is not None and self.writer is not None
        out = {}
        for name in self.config.streams:
            last = (await self.js.stream_info(name)).state.last_seq
            out[name] = max(0, last - self.writer.cursor(name))
        return out

    async def wait_caught_up(self, timeout: float = 30.0) -> None:
        """Wait until every stream's messages (as of now) are recorded; TimeoutError otherwise."""
        async with asyncio.timeout(timeout):
            while any((await self.lag()).values()):
                await asyncio.sleep(0.05)

    async def stop(self) -> None:
        """Stop fetching, commit what was fetched, anchor the head, drain NATS, close the pool."""
        if self._stopped:
            return
        self._stopped = True
        self._stopping.set()
        if self.reads is not None:
            await self.reads.stop()
        deadline = asyncio.get_running_loop().time() + STOP_TIMEOUT  # for fetchers and writer together
        feeds = [t for t in self._tasks if t.get_name().startswith("audit-feed")]
        for t in self._tasks:
            if t not in feeds:
                t.cancel()
        if feeds:
            _, pending = await asyncio.wait(feeds, timeout=STOP_TIMEOUT)
            for t in pending:  # still waiting on the database: unacked, so redelivered and recorded later
                t.cancel()
        if self.writer is not None and self._writer_task is not None:
            await self.writer.stop()
            remaining = max(1.0, deadline - asyncio.get_running_loop().time())
            try:
                await asyncio.wait_for(self._writer_task, remaining)
            except (TimeoutError, Exception) as exc:
                log.warning("audit writer did not finish cleanly: %r", exc)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.anchor_now(), 5)
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for feed in self.feeds:
            await feed.close()
        for pool in (self.reads_pool, self.pool):
            if pool is not None:
                try:
                    await asyncio.wait_for(pool.close(), 5)
                except (TimeoutError, Exception):
                    pool.terminate()
        if self.nc is not None:
            try:
                await asyncio.wait_for(self.nc.drain(), 5)
            except (TimeoutError, nats.errors.Error):
                await self.nc.close()
