"""Tampering with a real audit database is caught, and named, by `verify`.

One pristine chain is recorded once per module; each test tampers with its own copy
(CREATE DATABASE ... TEMPLATE) the way an attacker with database access would, bypassing the
append-only triggers as a superuser (``session_replication_role = replica``).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import NamedTuple
from uuid import uuid4

import asyncpg
import nats
import pytest

from libs.events import NEW, Aggregate, Metadata, subjects
from libs.events.pool import PrewarmRequested
from libs.events.store import EventStore
from services.audit.app import AuditService
from services.audit.chain import canonical, record_hash
from services.audit.check import verify_audit
from services.audit.config import APP_ROLE, AuditConfig
from services.audit.repository import VERIFY_SELECT
from services.audit.testing import database_name, fresh_database, test_config

pytestmark = pytest.mark.timeout(60)
EVENTS = 60


class Pristine(NamedTuple):
    database: str
    config: AuditConfig
    last_seq: int


@pytest.fixture(scope="module")
async def pristine(database_url: str, nats_url: str) -> AsyncIterator[Pristine]:
    """A verified chain of EVENTS events (anchored every 20 records), with the service stopped."""
    dsn = await fresh_database(database_url, "pristine")
    config = test_config(nats_url, dsn, AUDIT_ANCHOR_EVERY="20", AUDIT_ANCHOR_SECONDS="3600")
    service = AuditService(config)
    await asyncio.wait_for(service.start(), 20)
    nc = await nats.connect(nats_url)
    try:
        store = EventStore(nc.jetstream())
        token = "tamper" + uuid4().hex[:8]
        for i in range(EVENTS):
            await store.append(Aggregate(subjects.POOL, token, f"i{i}"), [PrewarmRequested(pool_id="p", count=i)],
                               NEW, Metadata(actor="user:mallory"))
        await service.wait_caught_up(20)
        await service.anchor_now()
        await service.wait_caught_up(20)
    finally:
        await asyncio.wait_for(service.stop(), 20)
        await nc.close()
    assert service.writer is not None
    yield Pristine(database_name(dsn), config, service.writer.head.seq)


@pytest.fixture
async def copy(database_url: str, pristine: Pristine) -> str:
    """A private copy of the pristine chain to tamper with."""
    return await fresh_database(database_url, "tampered", template=pristine.database)


async def tamper(dsn: str, *statements: str, as_app: bool = False) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        async with conn.transaction():
            await conn.execute(f"SET LOCAL ROLE {APP_ROLE}" if as_app else "SET LOCAL session_replication_role = replica")
            for statement in statements:
                await conn.execute(statement)
    finally:
        await conn.close()


async def verdict(dsn: str, js, config: AuditConfig) -> tuple[str, int, str] | None:
    """Verify in one process and split over worker processes; both must name the same first problem."""
    firsts = []
    for workers in (1, 3):
        conn = await asyncpg.connect(dsn)
        try:
            report = await asyncio.wait_for(verify_audit(conn, js, chain=config.chain, keyring=config.keyring,
                                                         streams=config.streams, dsn=dsn, workers=workers,
                                                         parallel_min=0), 30)
        finally:
            await conn.close()
        firsts.append(None if report.first is None else (report.first.kind, report.first.seq))
        if workers == 1:
            single = report
    assert firsts[0] == firsts[1], f"one process says {firsts[0]}, workers say {firsts[1]}"
    return None if single.first is None else (single.first.kind, single.first.seq, single.first.reason)


async def rehash_from(dsn: str, seq: int) -> None:
    """Recompute every hash and link from ``seq`` on, as an attacker without the key can."""
    conn = await asyncpg.connect(dsn)
    try:
        rows = [list(r) for r in await conn.fetch(VERIFY_SELECT, seq - 2)]  # from seq - 1, the last intact
        prev = bytes(rows[0][15])
        async with conn.transaction():
            await conn.execute("SET LOCAL session_replication_role = replica")
            for r in rows[1:]:
                digest = record_hash(canonical(*r[:12], r[13], prev, r[12]))
                await conn.execute("UPDATE audit.records SET prev_hash = $1, hash = $2 WHERE seq = $3", prev, digest,
                                   r[0])
                prev = digest
            await conn.execute("UPDATE audit.head SET hash = $1", prev)
    finally:
        await conn.close()


async def test_the_untouched_copy_verifies(copy: str, js, pristine: Pristine) -> None:
    assert await verdict(copy, js, pristine.config) is None


async def test_altered_payload(copy: str, js, pristine: Pristine) -> None:
    await tamper(copy, "UPDATE audit.records SET payload = replace(payload, '\"count\":9', '\"count\":900') "
                       "WHERE seq = 10")
    kind, seq, _ = await verdict(copy, js, pristine.config)
    assert (kind, seq) == ("altered", 10)


async def test_deleted_row(copy: str, js, pristine: Pristine) -> None:
    await tamper(copy, "DELETE FROM audit.records WHERE seq = 15")
    kind, seq, _ = await verdict(copy, js, pristine.config)
    assert (kind, seq) == ("deleted", 15)


async def test_swapped_rows(copy: str, js, pristine: Pristine) -> None:
    await tamper(copy, "UPDATE audit.records SET seq = -1 WHERE seq = 20",
                 "UPDATE audit.records SET seq = 20 WHERE seq = 30",
                 "UPDATE audit.records SET seq = 30 WHERE seq = -1")
    kind, seq, _ = await verdict(copy, js, pristine.config)
    assert (kind, seq) == ("reordered", 20)


async def test_forged_row_inserted_by_the_app_role(copy: str, js, pristine: Pristine) -> None:
    head = pristine.last_seq
    # The app role may insert (that is its job), so a forger can chain a plausible row onto the head.
    conn = await asyncpg.connect(copy)
    try:
        last = list(await conn.fetchrow(VERIFY_SELECT, head - 1))
    finally:
        await conn.close()
    forged = [head + 1, "forged-" + uuid4().hex, last[2], last[3] + 10_000, last[4], "event", last[6], last[7],
              last[8], "user:mallory", last[10], last[11], last[12], last[13], bytes(last[15])]
    forged_hash = record_hash(canonical(*forged[:12], forged[13], forged[14], forged[12]))
    await tamper(copy, f"""INSERT INTO audit.records (seq, event_id, stream, stream_seq, subject, kind, type,
        aggregate_type, aggregate_id, actor, occurred_at, recorded_at, payload, key_id, prev_hash, hash, hmac)
        SELECT {head + 1}, '{forged[1]}', stream, stream_seq + 10000, subject, kind, type, aggregate_type, aggregate_id,
        'user:mallory', occurred_at, recorded_at, payload, key_id, hash, '\\x{forged_hash.hex()}'::bytea,
        '\\x{'00' * 32}'::bytea FROM audit.records WHERE seq = {head}""", as_app=True)
    kind, seq, _ = await verdict(copy, js, pristine.config)
    assert (kind, seq) == ("inserted", head + 1)


async def test_truncated_tail(copy: str, js, pristine: Pristine) -> None:
    await tamper(copy, "DELETE FROM audit.records WHERE seq > 50")
    kind, seq, _ = await verdict(copy, js, pristine.config)
    assert (kind, seq) == ("truncated", 51)


async def test_truncated_tail_with_head_and_cursors_rolled_back_is_caught_by_the_anchors(
        copy: str, js, pristine: Pristine) -> None:
    await tamper(copy, "DELETE FROM audit.records WHERE seq > 30",
                 "UPDATE audit.head SET seq = 30, hash = (SELECT hash FROM audit.records WHERE seq = 30)",
                 "UPDATE audit.cursors c SET applied_seq = (SELECT max(stream_seq) FROM audit.records r "
                 "WHERE r.stream = c.stream) WHERE c.stream = 'EVENTS_POOL'",
                 "DELETE FROM audit.cursors WHERE stream = 'EVENTS_AUDIT'")
    kind, seq, reason = await verdict(copy, js, pristine.config)
    assert (kind, seq) == ("truncated", 31) and "checkpoint" in reason


async def test_table_rewritten_with_a_recomputed_chain(copy: str, js, pristine: Pristine) -> None:
    await tamper(copy, "UPDATE audit.records SET actor = 'user:nobody' WHERE seq = 25")
    await rehash_from(copy, 25)
    kind, seq, reason = await verdict(copy, js, pristine.config)
    assert (kind, seq) == ("altered", 25) and "HMAC" in reason
