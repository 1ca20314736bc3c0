"""The audit service's commands over NATS (libs.contracts.audit): query, verify, tampering found, busy, bad input.

The service connects as the ``audit`` NATS user and the caller as the ``gateway`` user, so the
permissions of libs/stack/natsauth.py are exercised too.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any, NamedTuple

import asyncpg
import msgspec
import nats
import pytest
from nats.aio.client import Client as NatsClient

from libs.contracts import audit as contract
from libs.events import codec
from services.audit.app import AuditService
from services.audit.reader import AuditReader
from services.audit.testing import fresh_database, test_config
from tests.integration.test_audit_service import publish

pytestmark = pytest.mark.timeout(60)


class Running(NamedTuple):
    service: AuditService
    caller: NatsClient
    dsn: str
    token: str


@pytest.fixture
async def running(nats_user_url: Callable[[str], str], database_url: str, js: Any) -> AsyncIterator[Running]:
    """An audit service (as the audit user) with six recorded events, and a caller connected as the gateway."""
    dsn = await fresh_database(database_url, "auditcmd")
    config = test_config(nats_user_url("audit"), dsn)
    service = AuditService(config)
    await asyncio.wait_for(service.start(), 20)
    caller = await nats.connect(nats_user_url("gateway"), inbox_prefix=b"_INBOX.gateway")
    try:
        token = await publish(js, 6)
        await service.wait_caught_up(20)
        yield Running(service, caller, dsn, token)
    finally:
        await caller.close()
        await asyncio.wait_for(service.stop(), 20)


async def ask(r: Running, subject: str, request: Any, timeout: float = 30) -> contract.Reply:
    msg = await r.caller.request(subject, codec.encode(request), timeout=timeout)
    return msgspec.json.decode(msg.data, type=contract.Reply)


async def test_query_pages_by_filter_and_cursor(running: Running) -> None:
    subject = contract.query_subject(running.service.config.chain)
    reply = await ask(running, subject, contract.QueryRequest(aggregate_type=running.token, limit=4))
    assert reply.ok, reply.error
    page = msgspec.convert(reply.result, contract.Page)
    assert [r.aggregate_id for r in page.items] == ["i0", "i1", "i2", "i3"] and page.next == page.items[-1].seq
    assert all(len(r.hash) == 64 and r.payload["event"]["pool_id"] == "p" for r in page.items)
    reply = await ask(running, subject, contract.QueryRequest(aggregate_type=running.token, after=page.next))
    rest = msgspec.convert(reply.result, contract.Page)
    assert [r.aggregate_id for r in rest.items] == ["i4", "i5"] and rest.next is None
    reply = await ask(running, subject, contract.QueryRequest(aggregate_type=running.token, order="desc", limit=1))
    assert msgspec.convert(reply.result, contract.Page).items[0].aggregate_id == "i5"

    for bad in ({"limit": 0}, {"limit": 5000}, {"order": "sideways"}, {"nope": 1}, {"since": "yesterday"}):
        reply = await ask(running, subject, bad)
        assert not reply.ok and reply.error is not None and reply.error.code == "VALIDATION_FAILED", bad


async def test_verify_ok_then_finds_the_tampered_record_and_one_at_a_time(running: Running) -> None:
    subject = contract.verify_subject(running.service.config.chain)
    reply = await ask(running, subject, contract.VerifyRequest())
    assert reply.ok, reply.error
    report = msgspec.convert(reply.result, contract.VerifyReport)
    assert report.ok and report.first is None and report.records >= 6

    # Only one verification at a time, where the key lives: another request meanwhile is told so.
    async with running.service.reads.verifying:  # type: ignore[union-attr]
        busy = await ask(running, subject, contract.VerifyRequest())
    assert not busy.ok and busy.error is not None and busy.error.code == "BUSY"

    conn = await asyncpg.connect(running.dsn)
    try:
        victim = await conn.fetchval("SELECT seq FROM audit.records WHERE aggregate_id = 'i2' AND aggregate_type = $1",
                                     running.token)
        async with conn.transaction():
            await conn.execute("SET LOCAL session_replication_role = replica")
            await conn.execute("UPDATE audit.records SET actor = 'user:mallory' WHERE seq = $1", victim)
    finally:
        await conn.close()
    reply = await ask(running, subject, contract.VerifyRequest(deep=True))
    assert reply.ok, reply.error
    report = msgspec.convert(reply.result, contract.VerifyReport)
    assert not report.ok and report.first is not None
    assert report.first.seq == victim and report.first.kind == "altered" and report.first.reason


async def test_the_gateway_user_cannot_answer_audit_commands(running: Running) -> None:
    """Only the audit user may subscribe to cmd.audit.>: a compromised gateway cannot impersonate it."""
    errors: list[Exception] = []

    async def on_error(exc: Exception) -> None:
        errors.append(exc)

    impostor = await nats.connect(running.caller.connected_url.geturl(), error_cb=on_error,  # type: ignore[union-attr]
                                  inbox_prefix=b"_INBOX.gateway")
    try:
        await impostor.subscribe("cmd.audit.>")
        await impostor.flush()
        for _ in range(50):
            if errors:
                break
            await asyncio.sleep(0.05)
        assert any("permissions violation" in str(e).lower() for e in errors), errors
    finally:
        await impostor.close()


async def test_a_read_only_replica_answers_queries_but_never_verifies(running: Running,
                                                                     nats_user_url: Callable[[str], str]) -> None:
    chain = running.service.config.chain
    reader = AuditReader({"NATS_URL": nats_user_url("audit"), "DATABASE_URL": running.dsn, "AUDIT_CHAIN": chain})
    await asyncio.wait_for(reader.start(), 20)
    try:
        await running.service.reads.stop()  # type: ignore[union-attr]  # the writer answers nothing now
        reply = await ask(running, contract.query_subject(chain), contract.QueryRequest(aggregate_type=running.token))
        assert reply.ok and len(msgspec.convert(reply.result, contract.Page).items) == 6
        with pytest.raises(nats.errors.NoRespondersError):  # no key in the replica: verification is the writer's
            await ask(running, contract.verify_subject(chain), contract.VerifyRequest(), timeout=5)
    finally:
        await asyncio.wait_for(reader.stop(), 20)
