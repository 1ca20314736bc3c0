"""PostgreSQL stopped for 30 s while events flow: the audit rides it out and catches up with no gaps."""

from __future__ import annotations

import asyncio
import time
from uuid import uuid4

import asyncpg
import pytest

from libs.events import NEW, Aggregate, Metadata, subjects
from libs.events.pool import PrewarmRequested
from libs.events.store import EventStore
from services.audit.app import AuditService
from services.audit.check import verify_audit
from services.audit.testing import fresh_database, test_config

OUTAGE_S = 30.0


@pytest.mark.slow
@pytest.mark.timeout(100)
async def test_postgres_outage_while_events_flow(database_url: str, nats_url: str, js, postgres_server) -> None:
    dsn = await fresh_database(database_url)
    config = test_config(nats_url, dsn, AUDIT_ANCHOR_SECONDS="2")
    service = AuditService(config)
    await asyncio.wait_for(service.start(), 20)
    token = "outage" + uuid4().hex[:8]
    store = EventStore(js)
    published = 0
    flowing = True

    async def produce() -> None:
        nonlocal published
        while flowing:
            await store.append(Aggregate(subjects.POOL, token, f"i{published}"),
                               [PrewarmRequested(pool_id="p", count=published)], NEW, Metadata(actor="pool"))
            published += 1
            await asyncio.sleep(0.02)

    producer = asyncio.create_task(produce())
    try:
        await asyncio.sleep(2)
        before_outage = published
        assert service.writer is not None
        await postgres_server.stop()
        stopped_at = time.monotonic()
        await asyncio.sleep(OUTAGE_S)
        assert service.writer.failures > 0  # it really tried, and failed, while the database was down
        during = published - before_outage
        await postgres_server.start()
        assert time.monotonic() - stopped_at >= OUTAGE_S
        await asyncio.sleep(2)
        flowing = False
        await asyncio.wait_for(producer, 10)
        await service.wait_caught_up(40)
        await service.anchor_now()
        await service.wait_caught_up(20)
    finally:
        flowing = False
        if not producer.done():
            producer.cancel()
        await asyncio.wait_for(service.stop(), 20)

    assert during > 100  # events kept flowing through the outage
    conn = await asyncpg.connect(dsn)
    try:
        mine = await conn.fetch("SELECT seq, stream_seq, aggregate_id FROM audit.records WHERE aggregate_type = $1 "
                                "ORDER BY seq", token)
        seqs = [r["seq"] for r in await conn.fetch("SELECT seq FROM audit.records ORDER BY seq")]
        report = await asyncio.wait_for(verify_audit(conn, js, chain=config.chain, keyring=config.keyring,
                                                     streams=config.streams), 30)
    finally:
        await conn.close()
    assert len(mine) == published and {r["aggregate_id"] for r in mine} == {f"i{i}" for i in range(published)}
    assert [r["stream_seq"] for r in mine] == sorted(r["stream_seq"] for r in mine)
    assert seqs == list(range(1, len(seqs) + 1))  # 0 gaps in the chain
    assert report.ok, report.first
    # Only the final anchor, published as the service stopped, may be unrecorded (the next start records it).
    assert report.lag[subjects.event_stream(subjects.POOL)] == 0 and report.lag["EVENTS_AUDIT"] <= 1
