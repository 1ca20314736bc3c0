"""The audit service against real NATS and PostgreSQL: one record per event, in order, verifiable."""

from __future__ import annotations

import argparse
import asyncio
import io
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import redirect_stdout
from datetime import datetime, timedelta, timezone
from uuid import uuid4

import asyncpg
import pytest
from aiohttp.test_utils import TestClient, TestServer
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from libs.events import NEW, Aggregate, Metadata, codec, subjects
from libs.events.audit import AuditAnchored, AuditPruned
from libs.events.pool import PrewarmRequested
from libs.events.store import EventStore
from services.audit import repository
from services.audit.anchor import load_checkpoints
from services.audit.api import create_api
from services.audit.app import AuditService
from services.audit.chain import Keyring, fingerprint
from services.audit.check import verify_audit
from services.audit.cli import add_commands, run_verify
from services.audit.config import APP_ROLE, AuditConfig
from services.audit.consumer import to_message
from services.audit.testing import fresh_database, test_config

pytestmark = pytest.mark.timeout(60)
POOL = subjects.event_stream(subjects.POOL)
Start = Callable[..., Awaitable[AuditService]]


@pytest.fixture
async def dsn(database_url: str) -> str:
    """A fresh database per test: each holds one chain."""
    return await fresh_database(database_url)


@pytest.fixture
async def start(js) -> AsyncIterator[Start]:
    """Start audit services; whatever a test leaves running is stopped at teardown."""
    running: list[AuditService] = []

    async def go(config: AuditConfig, **kwargs: object) -> AuditService:
        service = AuditService(config, **kwargs)  # type: ignore[arg-type]
        await asyncio.wait_for(service.start(), 20)
        running.append(service)
        return service

    yield go
    for service in running:
        await asyncio.wait_for(service.stop(), 20)


async def publish(js, n: int, *, actor: str = "pool", token: str | None = None, prefix: str = "i") -> str:
    """Append n events on n new aggregates (of a fresh aggregate type unless given); return the type."""
    token = token or "a" + uuid4().hex[:10]
    store = EventStore(js)
    for i in range(n):
        await store.append(Aggregate(subjects.POOL, token, f"{prefix}{i}"), [PrewarmRequested(pool_id="p", count=i)], NEW,
                           Metadata(actor=actor))
    return token


async def rows(dsn: str, sql: str = "SELECT * FROM audit.records ORDER BY seq", *args: object) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(dsn)
    try:
        return list(await conn.fetch(sql, *args))
    finally:
        await conn.close()


async def verify(dsn: str, js, config: AuditConfig, keyring: Keyring | None = None, deep: bool = False):
    conn = await asyncpg.connect(dsn)
    try:
        return await asyncio.wait_for(verify_audit(conn, js, chain=config.chain, keyring=keyring or config.keyring,
                                                   streams=config.streams, deep=deep), 30)
    finally:
        await conn.close()


async def settle(service: AuditService) -> None:
    """Caught up, with the head anchored and the anchor itself recorded."""
    await service.wait_caught_up(20)
    await asyncio.wait_for(service.anchor_now(), 10)
    await service.wait_caught_up(20)


async def test_migrations_are_idempotent_and_the_app_role_cannot_change_rows(dsn: str, js, start: Start,
                                                                             nats_url: str) -> None:
    config = test_config(nats_url, dsn)
    service = await start(config)
    await publish(js, 3)
    await service.wait_caught_up(20)
    conn = await asyncpg.connect(dsn)
    try:
        assert await repository.migrate(conn) == []  # applied at start already: nothing to do
        assert await conn.fetchval("SELECT count(*) FROM audit.schema_migrations") == 1
        async with conn.transaction():
            await conn.execute(f"SET LOCAL ROLE {APP_ROLE}")
            assert await conn.fetchval("SELECT current_user") == APP_ROLE
            assert await conn.fetchval("SELECT count(*) FROM audit.records") >= 3
            for statement in ("UPDATE audit.records SET actor = 'x'", "DELETE FROM audit.records",
                              "TRUNCATE audit.records", "DELETE FROM audit.checkpoints",
                              "SELECT audit.prune(1, '', '', '', '{}', '', '')"):
                with pytest.raises(asyncpg.InsufficientPrivilegeError):
                    async with conn.transaction():
                        await conn.execute(statement)
        # Even the owner cannot change rows by accident: only audit.prune deletes.
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
            await conn.execute("UPDATE audit.records SET actor = 'x' WHERE seq = 1")
        # The service's own pool runs as the app role.
        assert service.pool is not None
        async with service.pool.acquire() as pooled:
            assert await pooled.fetchval("SELECT current_user") == APP_ROLE
    finally:
        await conn.close()


async def test_every_event_is_recorded_once_in_order_and_verifies(dsn: str, js, start: Start,
                                                                  nats_url: str) -> None:
    admin_key = "sk-admin-" + uuid4().hex
    config = test_config(nats_url, dsn, AUDIT_ANCHOR_EVERY="25", STOKER_ADMIN_KEY=admin_key)
    service = await start(config)
    token = await publish(js, 60, actor=f"admin:{admin_key}")
    await publish(js, 5, actor=admin_key, token=token + "b")
    await settle(service)

    recorded = await rows(dsn)
    mine = [r for r in recorded if r["aggregate_type"] == token]
    assert [r["stream_seq"] for r in mine] == sorted(r["stream_seq"] for r in mine)
    assert [r["seq"] for r in recorded] == list(range(1, len(recorded) + 1))
    assert len({r["event_id"] for r in recorded}) == len(recorded)
    assert len(mine) == 60 and [codec.loads(r["payload"].encode())["event"]["count"] for r in mine] == list(range(60))
    assert {r["actor"] for r in recorded if r["aggregate_type"].startswith(token)} == {f"admin:{fingerprint(admin_key)}"}
    everything = "".join(str(tuple(r)) for r in recorded)
    assert admin_key not in everything and config.keyring.current.decode() not in everything

    anchors = [cp for cp in await load_checkpoints(js, config.chain) if cp.kind == "anchor"]
    assert len(anchors) >= 2  # every 25 records, and the final one
    report = await verify(dsn, js, config)
    assert report.ok, report.first
    assert report.records == len(recorded) and report.lag == {s: 0 for s in config.streams}
    assert (await verify(dsn, js, config, deep=True)).ok


async def test_query_filters_and_keyset_pagination(dsn: str, js, start: Start, nats_url: str) -> None:
    config = test_config(nats_url, dsn)
    service = await start(config)
    token = await publish(js, 23, actor="user:alice")
    await publish(js, 4, actor="user:bob", token=token, prefix="b")
    await service.wait_caught_up(20)
    conn = await asyncpg.connect(dsn)
    try:
        pages, after = [], None
        while True:
            page = await repository.query(conn, repository.Query(aggregate_type=token, actor="user:alice",
                                                                 after=after, limit=7))
            pages.append(page)
            if len(page) < 7:
                break
            after = page[-1]["seq"]
        seqs = [r["seq"] for page in pages for r in page]
        assert len(seqs) == 23 and seqs == sorted(set(seqs)) and [len(p) for p in pages] == [7, 7, 7, 2]
        by_type = await repository.query(conn, repository.Query(type="PrewarmRequested", aggregate_type=token,
                                                                limit=1000))
        assert len(by_type) == 27
        one = await repository.query(conn, repository.Query(aggregate_type=token, aggregate_id="b3"))
        assert [r["actor"] for r in one] == ["user:bob"]
        newest = await repository.query(conn, repository.Query(aggregate_type=token, descending=True, limit=3))
        assert [r["seq"] for r in newest] == sorted((r["seq"] for r in by_type), reverse=True)[:3]
        older = await repository.query(conn, repository.Query(aggregate_type=token, descending=True, limit=3,
                                                              before=newest[-1]["seq"]))
        assert [r["seq"] for r in older] == sorted((r["seq"] for r in by_type), reverse=True)[3:6]
        now = datetime.now(timezone.utc)
        assert len(await repository.query(conn, repository.Query(aggregate_type=token, since=now - timedelta(
            minutes=5), until=now + timedelta(minutes=5), limit=1000))) == 27
        assert await repository.query(conn, repository.Query(aggregate_type=token, until=now - timedelta(days=1))) == []
    finally:
        await conn.close()


async def test_redelivered_events_are_recorded_once(dsn: str, js, start: Start, nats_url: str) -> None:
    config = test_config(nats_url, dsn, AUDIT_ANCHOR_SECONDS="3600")  # no anchor records while we compare
    service = await start(config)
    token = await publish(js, 30)
    await service.wait_caught_up(20)
    before = await rows(dsn)

    # 1. The same messages handed to the writer again (as a redelivery would), whole and overlapping.
    tmp = await js.pull_subscribe(f"ev.pool.{token}.*", stream=POOL, config=ConsumerConfig(
        ack_policy=AckPolicy.NONE, deliver_policy=DeliverPolicy.ALL))
    fetched = []
    while len(fetched) < 30:
        fetched += await tmp.fetch(30 - len(fetched), timeout=5)
    await tmp.unsubscribe()
    msgs = [to_message(POOL, m) for m in fetched]
    assert service.writer is not None
    await asyncio.wait_for(service.writer.submit(POOL, msgs), 10)
    await asyncio.wait_for(service.writer.submit(POOL, msgs[10:] + msgs[:5]), 10)

    # 2. NATS delivers everything again: the durable is rewound to the start of the stream.
    await js.delete_consumer(POOL, config.durable)
    await js.add_consumer(POOL, ConsumerConfig(durable_name=config.durable, ack_policy=AckPolicy.ALL,
                                               deliver_policy=DeliverPolicy.ALL))
    last = (await js.stream_info(POOL)).state.last_seq
    async with asyncio.timeout(20):
        while (await js.consumer_info(POOL, config.durable)).ack_floor.stream_seq < last:
            await asyncio.sleep(0.1)
    await service.wait_caught_up(20)

    after = await rows(dsn)
    # Records made before are untouched; anything new is another service's anchor on the shared
    # EVENTS_AUDIT stream (other tests' audit chains), never a second record of a redelivered event.
    assert [tuple(r) for r in after[:len(before)]] == [tuple(r) for r in before]
    assert all(r["stream"] == "EVENTS_AUDIT" for r in after[len(before):]), after[len(before):]
    mine = [r for r in after if r["aggregate_type"] == token]
    assert len(mine) == 30 and len({r["event_id"] for r in mine}) == 30
    assert (await verify(dsn, js, config)).ok


async def test_an_event_published_twice_is_one_event_record_and_one_duplicate(dsn: str, js, start: Start,
                                                                              nats_url: str) -> None:
    config = test_config(nats_url, dsn)
    service = await start(config)
    store = EventStore(js)
    agg = Aggregate(subjects.POOL, "dup" + uuid4().hex[:8], "i1")
    env = store.envelope(agg, PrewarmRequested(pool_id="p", count=1), 1, Metadata(actor="pool"))
    data = codec.encode(env)
    for attempt in range(2):  # a producer retrying after the duplicate window: two stream messages
        await js.publish(subjects.aggregate_subject(agg), data, headers={"Nats-Msg-Id": f"{env.id}-{attempt}"})
    await service.wait_caught_up(20)
    mine = await rows(dsn, "SELECT * FROM audit.records WHERE aggregate_type = $1 ORDER BY seq", agg.type)
    assert [r["kind"] for r in mine] == ["event", "duplicate"]
    assert mine[0]["event_id"] == env.id and env.id in mine[1]["event_id"]
    assert (await verify(dsn, js, config, deep=True)).ok


async def test_poison_message_is_quarantined_and_recorded_as_unreadable(dsn: str, js, start: Start,
                                                                        nats_url: str) -> None:
    config = test_config(nats_url, dsn)
    service = await start(config)
    token = "poison" + uuid4().hex[:8]
    ack = await js.publish(f"ev.pool.{token}.x1", b"\x00 not an event", stream=POOL)
    await publish(js, 2, token=token)
    await service.wait_caught_up(20)
    mine = await rows(dsn, "SELECT * FROM audit.records WHERE aggregate_type = $1 ORDER BY seq", token)
    assert [r["kind"] for r in mine] == ["unreadable", "event", "event"]
    assert mine[0]["stream_seq"] == ack.seq and mine[0]["event_id"] == f"unreadable:{POOL}:{ack.seq}"
    assert codec.loads(mine[0]["payload"].encode())["error"] == "malformed"
    kept = await js.get_last_msg(subjects.QUARANTINE_STREAM, subjects.quarantine_subject(config.durable))
    assert kept.data == b"\x00 not an event" and kept.headers["Stoker-Seq"] == str(ack.seq)
    assert (await verify(dsn, js, config)).ok


async def test_hostile_fields_do_not_stop_the_audit(dsn: str, js, start: Start, nats_url: str) -> None:
    config = test_config(nats_url, dsn)
    service = await start(config)
    token = "hostile" + uuid4().hex[:8]
    data = (b'{"id":"nul\\u0000id","schema":1,"aggregate_type":"' + token.encode() + b'","aggregate_id":"'
            + b"y" * 5000 + b'","aggregate_version":1,"occurred_at":"2026-01-01T00:00:00Z","actor":"'
            + b"a" * 5000 + b'","event":{"type":"PoolReset","pool_id":"p\\u0000","reason":"r"}}')
    await js.publish(f"ev.pool.{token}.x1", data, stream=POOL)
    await publish(js, 2, token=token)
    await service.wait_caught_up(20)
    mine = await rows(dsn, "SELECT * FROM audit.records WHERE aggregate_type = $1 ORDER BY seq", token)
    assert [r["kind"] for r in mine] == ["event"] * 3
    assert mine[0]["event_id"] == "nul\ufffdid" and len(mine[0]["actor"]) == 512
    assert (await verify(dsn, js, config)).ok


async def test_restart_continues_the_chain_without_gaps(dsn: str, js, start: Start, nats_url: str) -> None:
    config = test_config(nats_url, dsn)
    first = await start(config)
    token = await publish(js, 10)
    await first.wait_caught_up(20)
    await first.stop()
    await publish(js, 10, token=token + "x")  # while the service is down
    second = await start(config)
    await publish(js, 5, token=token + "y")
    await settle(second)
    recorded = await rows(dsn)
    assert [r["seq"] for r in recorded] == list(range(1, len(recorded) + 1))
    assert sum(r["aggregate_type"].startswith(token) for r in recorded) == 25
    assert (await verify(dsn, js, config)).ok


async def test_rotated_keys_verify_with_the_keyring(dsn: str, js, start: Start, nats_url: str) -> None:
    config = test_config(nats_url, dsn)
    old_key = config.keyring.current.decode()
    first = await start(config)
    await publish(js, 5)
    await settle(first)
    await first.stop()

    rotated = test_config(nats_url, dsn, AUDIT_HMAC_KEY="rotated-" + uuid4().hex, AUDIT_HMAC_OLD_KEYS=old_key,
                          AUDIT_CHAIN=config.chain, AUDIT_DURABLE=config.durable)
    second = await start(rotated)
    await publish(js, 5)
    await settle(second)
    key_ids = {r["key_id"] for r in await rows(dsn)}
    assert key_ids == {config.keyring.current_id, rotated.keyring.current_id}
    assert (await verify(dsn, js, rotated)).ok
    new_only = Keyring(rotated.keyring.current)
    report = await verify(dsn, js, rotated, keyring=new_only)
    assert (report.first.kind, report.first.seq) == ("unknown_key", 0)  # the origin checkpoint
    assert ("unknown_key", 1) in [(p.kind, p.seq) for p in report.problems]  # and the first record


async def test_retention_prunes_behind_a_signed_checkpoint(dsn: str, js, start: Start, nats_url: str) -> None:
    now = datetime.now(timezone.utc)
    clock = [now - timedelta(days=100)]
    config = test_config(nats_url, dsn)
    service = await start(config, clock=lambda: clock[0])
    await publish(js, 12)
    await settle(service)
    old = len(await rows(dsn))
    clock[0] = now
    await publish(js, 6)
    await settle(service)

    pruned = await asyncio.wait_for(service.prune_once(), 20)
    assert pruned == old
    remaining = await rows(dsn)
    assert remaining[0]["seq"] == old + 1
    events = [cp for cp in await load_checkpoints(js, config.chain) if cp.kind == "prune"]
    assert [cp.seq for cp in events] == [old]
    stored = await rows(dsn, "SELECT seq, kind FROM audit.checkpoints ORDER BY seq")
    assert [(r["seq"], r["kind"]) for r in stored] == [(0, "origin"), (old, "prune")]
    assert await asyncio.wait_for(service.prune_once(), 20) == 0
    await publish(js, 3)
    await settle(service)
    report = await verify(dsn, js, config)
    assert report.ok, report.first
    assert report.first_seq == old + 1


async def test_api_and_cli_verify_and_query(dsn: str, js, start: Start, nats_url: str) -> None:
    config = test_config(nats_url, dsn)
    service = await start(config)
    token = await publish(js, 4, actor="user:carol")
    await settle(service)

    async with TestClient(TestServer(create_api(config))) as client:
        resp = await client.get("/records", params={"aggregate_type": token, "limit": "3"})
        body = await resp.json()
        assert resp.status == 200 and len(body["records"]) == 3 and body["next"] == body["records"][-1]["seq"]
        assert body["records"][0]["payload"]["event"]["type"] == "PrewarmRequested"
        rest = await (await client.get("/records", params={"aggregate_type": token, "after": str(body["next"])})).json()
        assert len(rest["records"]) == 1 and rest["next"] is None
        assert (await client.get("/records", params={"since": "yesterday"})).status == 400
        resp = await client.get("/verify")
        assert resp.status == 200 and (await resp.json())["ok"] is True

    parser = argparse.ArgumentParser()
    add_commands(parser.add_subparsers())
    args = parser.parse_args(["audit", "verify", "--database-url", dsn, "--nats-url", nats_url, "--chain",
                              config.chain, "--json"])
    out = io.StringIO()

    def run() -> int:
        with redirect_stdout(out):
            return run_verify(args, {"AUDIT_HMAC_KEY": config.keyring.current.decode()})

    assert await asyncio.to_thread(run) == 0
    assert json.loads(out.getvalue())["ok"] is True
    wrong = await asyncio.to_thread(run_verify, args, {"AUDIT_HMAC_KEY": "not-the-key"})
    assert wrong == 1
    assert await asyncio.to_thread(run_verify, args, {}) == 2


async def test_anchor_events_are_signed_and_on_the_audit_stream(dsn: str, js, start: Start, nats_url: str) -> None:
    config = test_config(nats_url, dsn, AUDIT_ANCHOR_EVERY="10")
    service = await start(config)
    await publish(js, 35)
    await settle(service)
    stream = subjects.event_stream(subjects.AUDIT)
    last = await js.get_last_msg(stream, f"ev.audit.chain.{config.chain}")
    event = codec.decode(last.data).event
    assert isinstance(event, AuditAnchored) and event.key_id == config.keyring.current_id
    assert not isinstance(event, AuditPruned)
    anchors = await load_checkpoints(js, config.chain)
    assert len(anchors) >= 2 and all(a.source == "nats" and a.kind == "anchor" for a in anchors)
    assert [a.seq for a in anchors] == sorted({a.seq for a in anchors})
    # Anchored every 10 records: never more than 10 behind the head (other tests' anchors on the shared
    # EVENTS_AUDIT stream may still be arriving and extend the chain while we look).
    assert service.writer is not None and service.writer.head.seq - anchors[-1].seq <= 10
    assert (await verify(dsn, js, config)).ok
