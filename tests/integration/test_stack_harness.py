"""The shared harness itself: JetStream on `js`, PostgreSQL on `pg`, servers that stop and start again."""

from __future__ import annotations

import asyncio

import asyncpg
import nats
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext


async def test_jetstream_add_stream_publish_get(js: JetStreamContext, unique_id: str) -> None:
    stream = f"T_{unique_id}"
    await js.add_stream(name=stream, subjects=[f"t.{unique_id}.>"])
    ack = await js.publish(f"t.{unique_id}.a", b"hello", headers={"Nats-Msg-Id": unique_id})
    again = await js.publish(f"t.{unique_id}.a", b"hello", headers={"Nats-Msg-Id": unique_id})
    assert (ack.stream, ack.seq) == (stream, 1)
    assert again.duplicate and again.seq == 1
    msg = await js.get_msg(stream, seq=1)
    assert msg.data == b"hello" and msg.subject == f"t.{unique_id}.a"


async def test_postgres_connection(pg: asyncpg.Connection, unique_id: str) -> None:
    assert await pg.fetchval("SELECT current_database()") == "stoker"
    table = f"t_{unique_id}"
    await pg.execute(f"CREATE TABLE {table} (id int PRIMARY KEY, body text)")
    await pg.execute(f"INSERT INTO {table} VALUES (1, 'x')")
    assert await pg.fetchval(f"SELECT body FROM {table} WHERE id = 1") == "x"


async def test_postgres_stops_and_starts_again_keeping_data(postgres_server, database_url: str, unique_id: str) -> None:
    table = f"keep_{unique_id}"
    conn = await asyncpg.connect(database_url, timeout=5)
    await conn.execute(f"CREATE TABLE {table} (v int); INSERT INTO {table} VALUES (42)")
    await conn.close()

    await postgres_server.stop()
    assert not postgres_server.running
    try:
        await asyncpg.connect(database_url, timeout=2)
    except (TimeoutError, OSError, asyncpg.PostgresError):
        pass
    else:
        raise AssertionError("PostgreSQL still accepts connections after stop()")

    await postgres_server.start()
    conn = await asyncpg.connect(database_url, timeout=5)
    try:
        assert await conn.fetchval(f"SELECT v FROM {table}") == 42
    finally:
        await conn.close()


async def test_nats_restart_keeps_acknowledged_messages(nats_server, nats_url: str, unique_id: str) -> None:
    nc: NatsClient = await nats.connect(nats_url, reconnect_time_wait=0.1, max_reconnect_attempts=-1)
    try:
        js = nc.jetstream(timeout=5)
        stream = f"R_{unique_id}"
        await js.add_stream(name=stream, subjects=[f"r.{unique_id}"])
        await js.publish(f"r.{unique_id}", b"durable")

        await nats_server.stop()
        assert not nats_server.running
        await nats_server.start()

        async with asyncio.timeout(10):
            while not nc.is_connected:
                await asyncio.sleep(0.05)
        msg = await js.get_msg(stream, seq=1)
        assert msg.data == b"durable"
    finally:
        await nc.close()
