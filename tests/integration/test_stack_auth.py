"""NATS and PostgreSQL refuse clients without credentials, and each service's credentials only what it needs."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import nats
import pytest
from nats.aio.client import Client as NatsClient

from libs import natsconn
from libs.events import subjects
from libs.stack import pgroles

FAST = 1.0  # a refused JetStream request gets no answer: wait this long for it


class Errors:
    """Collects the asynchronous errors a connection reports (permission violations arrive so)."""

    def __init__(self) -> None:
        self.seen: list[str] = []

        async def callback(exc: Exception) -> None:
            self.seen.append(str(exc))

        self.callback = callback

    def violations(self) -> list[str]:
        return [e for e in self.seen if "permissions violation" in e.lower()]


async def _connect(url: str, errors: Errors | None = None) -> NatsClient:
    return await natsconn.connect(url, env={}, connect_timeout=3, allow_reconnect=False,
                                  error_cb=(errors or Errors()).callback)


@pytest.fixture
async def as_user(nats_user_url: Callable[[str], str]) -> AsyncIterator[Callable[..., Any]]:
    opened: list[NatsClient] = []

    async def connect(user: str, errors: Errors | None = None) -> NatsClient:
        client = await _connect(nats_user_url(user), errors)
        opened.append(client)
        return client

    yield connect
    for client in opened:
        await client.close()


async def _handshake(url: str, connect: dict[str, Any]) -> bytes:
    """Speak the NATS protocol by hand: CONNECT with ``connect``, PING; the server's first answer."""
    host, port = url.rsplit("@", 1)[-1].removeprefix("nats://").rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        await reader.readline()  # INFO
        writer.write(b"CONNECT " + json.dumps({"verbose": False, "pedantic": False, **connect}).encode()
                     + b"\r\nPING\r\n")
        await writer.drain()
        return await asyncio.wait_for(reader.readline(), 5)
    finally:
        writer.close()
        await writer.wait_closed()


async def test_nats_refuses_a_client_without_credentials(nats_user_url: Callable[[str], str]) -> None:
    url = nats_user_url("gateway")
    password = url.split("//", 1)[1].split("@", 1)[0].split(":", 1)[1]
    assert await _handshake(url, {"user": "gateway", "pass": password}) == b"PONG\r\n"
    assert b"Authorization Violation" in await _handshake(url, {})
    assert b"Authorization Violation" in await _handshake(url, {"user": "gateway", "pass": "x" + password})


async def test_the_gateway_user_cannot_reach_what_belongs_to_other_services(as_user, nc, unique_id: str) -> None:
    # The generation service keeps its webhook master key in its bucket: it may, the gateway may not.
    gen = (await as_user("generation")).jetstream(timeout=5)
    from libs.events import streams

    await streams.ensure_bucket(gen, subjects.GEN_SECRETS_BUCKET)
    await (await gen.key_value(subjects.GEN_SECRETS_BUCKET)).put(f"probe-{unique_id}", b"secret")

    errors = Errors()
    gateway = await as_user("gateway", errors)
    gw = gateway.jetstream(timeout=FAST)
    with pytest.raises(Exception):  # noqa: B017 -- refused requests time out; which error nats-py raises varies
        await gw.key_value(subjects.GEN_SECRETS_BUCKET)
    got: list[bytes] = []

    async def on_secret(msg: Any) -> None:
        got.append(msg.data)

    await gateway.subscribe(f"$KV.{subjects.GEN_SECRETS_BUCKET}.>", cb=on_secret)  # refused by the server
    await gateway.flush(FAST)
    await (await gen.key_value(subjects.GEN_SECRETS_BUCKET)).put(f"probe-{unique_id}", b"rotated")

    # Only the pool receives a provider key.
    pool = await as_user("pool")
    subject = f"cmd.pool.p{unique_id}.set_provider_key"
    to_pool: list[bytes] = []
    to_gateway: list[bytes] = []

    async def on_pool(msg: Any) -> None:
        to_pool.append(msg.data)

    async def on_gateway(msg: Any) -> None:
        to_gateway.append(msg.data)

    await pool.subscribe(subject, cb=on_pool)
    await pool.flush()
    await gateway.subscribe(subject, cb=on_gateway)
    await gateway.flush(FAST)
    await nc.publish(subject, b'{"api_key": "k"}')
    await nc.flush()
    await asyncio.sleep(0.3)
    assert to_pool == [b'{"api_key": "k"}'] and to_gateway == []

    # Nor may the gateway append pool events around the pool, or write outputs.
    forged = f"ev.pool.instance.forged{unique_id}"
    with pytest.raises(Exception):  # noqa: B017
        await gw.publish(forged, b"{}")
    with pytest.raises(nats.js.errors.NotFoundError):
        await nc.jetstream(timeout=5).get_last_msg(subjects.event_stream(subjects.POOL), forged)
    await asyncio.sleep(0.2)
    assert errors.violations(), errors.seen
    assert got == []


async def test_each_service_subscribes_only_to_its_own_inbox(as_user, unique_id: str) -> None:
    errors = Errors()
    gateway = await as_user("gateway", errors)
    seen: list[bytes] = []

    async def on_msg(msg: Any) -> None:
        seen.append(msg.data)

    await gateway.subscribe("_INBOX.pool.>", cb=on_msg)
    await gateway.flush(FAST)
    pool = await as_user("pool")
    await pool.publish(f"_INBOX.pool.{unique_id}", b"reply")  # a pool's reply that must stay its own
    await pool.flush()
    await asyncio.sleep(0.3)
    assert seen == [] and errors.violations()


async def test_postgres_refuses_no_password_and_each_role_sees_only_its_schema(database_url: str,
                                                                              unique_id: str) -> None:
    # Roles are cluster-wide and other tests run as the superuser: this test owns a fresh database.
    from services.audit import repository as audit_repo
    from services.audit.testing import fresh_database
    from services.gateway import repository as gateway_repo

    parts = urlsplit(database_url)
    with pytest.raises((asyncpg.InvalidPasswordError, asyncpg.InvalidAuthorizationSpecificationError)):
        await asyncpg.connect(urlunsplit(parts._replace(netloc=f"postgres@{parts.hostname}:{parts.port}")), timeout=5)
    db = await fresh_database(database_url, prefix="roles")
    passwords = {role: f"pw-{role}-{unique_id}" for role in pgroles.SCHEMAS}
    su = await asyncpg.connect(db, timeout=10)
    try:
        await pgroles.bootstrap(su, passwords)
    finally:
        await su.close()

    def dsn(role: str) -> str:
        return urlunsplit(urlsplit(db)._replace(netloc=f"{role}:{passwords[role]}@{parts.hostname}:{parts.port}"))

    gateway = await asyncpg.connect(dsn(pgroles.GATEWAY_ROLE), timeout=10)
    audit = await asyncpg.connect(dsn(pgroles.AUDIT_ROLE), timeout=10)
    try:
        await gateway_repo.migrate(gateway)
        await audit_repo.migrate(audit)
        with pytest.raises(asyncpg.InsufficientPrivilegeError):  # password hashes stay the gateway's
            await audit.fetch("SELECT password_hash FROM gateway.users")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):  # and audit rows are the audit writer's to add
            await gateway.execute("INSERT INTO audit.cursors (stream, applied_seq) VALUES ('x', 1)")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await gateway.execute("CREATE SCHEMA elsewhere")
        # The gateway reads the audit log only through the audit service (cmd.audit.*), never its tables.
        for table in ("records", "checkpoints", "head", "cursors"):
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await gateway.fetch(f"SELECT * FROM audit.{table} LIMIT 1")
        # What older versions granted is taken back when the roles are bootstrapped again.
        su = await asyncpg.connect(db, timeout=10)
        try:
            await su.execute(f"GRANT USAGE ON SCHEMA audit TO {pgroles.GATEWAY_ROLE}; "
                             f"GRANT SELECT ON ALL TABLES IN SCHEMA audit TO {pgroles.GATEWAY_ROLE}")
            assert await gateway.fetchval("SELECT count(*) FROM audit.records") == 0
            await pgroles.bootstrap(su, passwords)
        finally:
            await su.close()
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await gateway.fetch("SELECT * FROM audit.records LIMIT 1")
    finally:
        await gateway.close()
        await audit.close()
