"""A provider key set at runtime reaches the pool and nothing else: no event, log line, audit row or error.

Everything is real: the gateway, a pool service renting from the simulated marketplace (which
accepts only the new key), an audit service recording every stream into PostgreSQL.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import uuid
from contextlib import aclosing

import asyncpg
import pytest
from aiohttp import ClientSession, test_utils
from nats.js.api import RetentionPolicy
from nats.js.errors import NotFoundError

from libs.events.reader import read_until_caught_up
from services.audit.app import AuditService
from services.audit.config import AuditConfig
from services.audit.testing import fresh_database
from services.gateway.app import create_app
from services.gateway.testing import (
    ADMIN,
    bearer,
    eventually,
    gateway_client,
    gateway_env,
    pool_on_sim,
    unique_pool_id,
    user_token,
)
from services.pool import api

pytestmark = pytest.mark.timeout(60)


async def every_message(js) -> bytes:
    """Every stored message of every stream, payloads and headers, as one blob."""
    blob = []
    for info in await js.streams_info():
        if info.config.retention == RetentionPolicy.WORK_QUEUE:  # no ordered consumer there: get one by one
            for seq in range(max(1, info.state.first_seq), info.state.last_seq + 1):
                with contextlib.suppress(NotFoundError):
                    msg = await js.get_msg(info.config.name, seq)
                    blob += [msg.data or b"", str(msg.headers).encode()]
            continue
        reader = read_until_caught_up(js, info.config.name, ">")
        async with aclosing(reader):
            async for d in reader:
                blob.append(d.data)
    return b"\n".join(blob)


async def test_a_runtime_provider_key_appears_nowhere(nats_url, database_url, nc, js, caplog, unique_id) -> None:
    caplog.set_level(logging.DEBUG)
    key = f"vast-{uuid.uuid4().hex}{uuid.uuid4().hex}"
    pool_id = unique_pool_id()
    dsn = await fresh_database(database_url, "gwkey")
    token = uuid.uuid4().hex[:10]
    audit = {"AUDIT_HMAC_KEY": "k-" + token, "AUDIT_CHAIN": f"k{token}", "AUDIT_DURABLE": f"audit-k{token}",
             "AUDIT_START": "new", "AUDIT_ANCHOR_SECONDS": "1"}
    service = AuditService(AuditConfig.from_mapping({"NATS_URL": nats_url, "DATABASE_URL": dsn, **audit}))
    await asyncio.wait_for(service.start(), 20)
    try:
        # The simulated marketplace accepts only `key`; the pool starts with another one.
        async with pool_on_sim(nc, js, pool_id, sim={"api_key": key}) as pool, \
                gateway_client(gateway_env(nats_url, dsn, STOKER_POOL_ID=pool_id, **audit)) as client:
            _, user = await user_token(client, f"keyuser-{unique_id}")
            resp = await client.post("/api/v1/pool/prewarm", json={}, headers=ADMIN)
            [refused] = (await resp.json())["instance_ids"]
            answers = [await resp.text()]
            seen = await (await client.get("/api/v1/pool", headers=ADMIN)).json()
            assert refused not in {i["id"] for i in seen["instances"]}  # the marketplace refused the old key
            resp = await client.post("/api/v1/admin/tokens", json={"vastai_api_key": key}, headers=ADMIN)
            assert resp.status == 200 and await resp.json() == {"updated": ["vastai"]}
            answers.append(await resp.text())
            resp = await client.post("/api/v1/pool/prewarm", json={}, headers=ADMIN)
            assert resp.status == 202, await resp.text()  # the pool now rents with the new key
            [iid] = (await resp.json())["instance_ids"]
            await eventually(lambda: pool.view.instances.get(iid) and pool.view.instances[iid].phase == "ready")
            for body, headers in [({"vastai_api_key": key}, bearer(user)), ({"vastai_api_key": key}, {}),
                                  ({"vastai_api_key": key + " x"}, ADMIN), ({"vastai_api_key": [key]}, ADMIN),
                                  ({"vastai_api_key": key, "other": key}, ADMIN), ({"vastai_api_key": key * 20}, ADMIN)]:
                resp = await client.post("/api/v1/admin/tokens", json=body, headers=headers)
                assert resp.status in (401, 403, 422)
                answers.append(await resp.text())
            resp = await client.post("/api/v1/admin/tokens", data=b'{"vastai_api_key": "' + key.encode(),
                                     headers={**ADMIN, "Content-Type": "application/json"})
            assert resp.status == 400
            answers.append(await resp.text())
            await pool.commands.terminate(api.TerminateRequest(instance_id=iid))
        await service.wait_caught_up(20)
    finally:
        await asyncio.wait_for(service.stop(), 20)

    assert all(key not in a for a in answers)
    assert key.encode() not in await every_message(js)
    assert key not in caplog.text and all(key not in str(r.args) for r in caplog.records)
    assert any("replaced at runtime" in r.getMessage() for r in caplog.records)  # the pool did take it
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch("SELECT payload, actor, aggregate_id FROM audit.records")
        actions = await conn.fetch("SELECT payload FROM audit.records WHERE type = 'AdminActionPerformed'")
    finally:
        await conn.close()
    assert rows and all(key not in "".join(map(str, r.values())) for r in rows)
    assert any('"set_provider_keys"' in r["payload"] for r in actions)  # the action is audited, the key is not


async def test_without_a_pool_the_answer_is_503(nats_url, database_url) -> None:
    async with gateway_client(gateway_env(nats_url, database_url)) as client:
        resp = await client.post("/api/v1/admin/tokens", json={"vastai_api_key": "k" * 40}, headers=ADMIN)
        assert resp.status == 503 and (await resp.json())["error"]["code"] == "POOL_UNAVAILABLE"


def _lan_address() -> str | None:
    """This machine's address on a non-loopback interface, if it has one."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))  # TEST-NET-1: nothing is sent for UDP connect
            address = s.getsockname()[0]
        except OSError:
            return None
    return None if address.startswith("127.") else address


async def test_only_loopback_peers_may_set_keys(nats_url, database_url) -> None:
    address = _lan_address()
    if address is None:
        pytest.skip("no non-loopback interface to connect from")
    app = create_app(gateway_env(nats_url, database_url))
    async with test_utils.TestServer(app, host="0.0.0.0") as server, ClientSession() as session:
        url = f"http://{address}:{server.port}/api/v1/admin/tokens"
        resp = await session.post(url, json={"vastai_api_key": "k" * 40},
                                  headers={**ADMIN, "X-Forwarded-For": "127.0.0.1", "Forwarded": "for=127.0.0.1"})
        assert resp.status == 403 and "loopback" in (await resp.json())["error"]["message"]
        resp = await session.get(f"http://{address}:{server.port}/metrics")
        assert resp.status == 401  # metrics from another machine need the admin key
        resp = await session.get(f"http://{address}:{server.port}/metrics", headers=ADMIN)
        assert resp.status == 200

