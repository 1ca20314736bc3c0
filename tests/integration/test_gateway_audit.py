"""Audit endpoints over a real audit service's chain in PostgreSQL: pages, filters, verification, tampering."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any, NamedTuple

import asyncpg
import msgspec
import pytest
from aiohttp import test_utils

from services.audit.app import AuditService
from services.audit.config import AuditConfig
from services.audit.testing import fresh_database
from services.gateway import schemas
from services.gateway.testing import (
    ADMIN,
    ADMIN_ACTOR,
    PASSWORD,
    bearer,
    gateway_client,
    gateway_env,
    user_token,
)

pytestmark = pytest.mark.timeout(60)


def audit_env(nats_url: str, dsn: str) -> dict[str, str]:
    token = uuid.uuid4().hex[:10]
    return {"NATS_URL": nats_url, "DATABASE_URL": dsn, "AUDIT_HMAC_KEY": "gw-audit-key-" + token,
            "AUDIT_CHAIN": f"g{token}", "AUDIT_DURABLE": f"audit-g{token}", "AUDIT_START": "new",
            "AUDIT_ANCHOR_SECONDS": "1", "AUDIT_PRUNE_INTERVAL_S": "3600"}


class Audited(NamedTuple):
    client: test_utils.TestClient
    service: AuditService
    dsn: str
    users: list[str]


@pytest.fixture
async def audited(nats_url: str, database_url: str, unique_id: str) -> AsyncIterator[Audited]:
    """An audit service and a gateway sharing a fresh database; three accounts registered by the admin."""
    dsn = await fresh_database(database_url, "gwaudit")
    env = audit_env(nats_url, dsn)
    service = AuditService(AuditConfig.from_mapping(env))
    await asyncio.wait_for(service.start(), 20)
    try:
        # The gateway is told only which chain to ask about: no audit key, no audit tables.
        async with gateway_client(gateway_env(nats_url, dsn, AUDIT_CHAIN=env["AUDIT_CHAIN"])) as client:
            users = []
            for n in range(3):
                resp = await client.post("/api/v1/auth/register",
                                         json={"username": f"aud{n}-{unique_id}", "password": PASSWORD}, headers=ADMIN)
                users.append((await resp.json())["id"])
            await service.wait_caught_up(20)
            yield Audited(client, service, dsn, users)
    finally:
        await asyncio.wait_for(service.stop(), 20)


async def page(a: Audited, **params: Any) -> tuple[int, dict[str, Any]]:
    resp = await a.client.get("/api/v1/audit", params={k: str(v) for k, v in params.items()}, headers=ADMIN)
    return resp.status, await resp.json()


async def test_pages_and_filters(audited: Audited) -> None:
    status, body = await page(audited, type="UserRegistered")
    assert status == 200
    msgspec.convert(body, schemas.AuditPage)
    # Besides the three accounts, the admin key's built-in account (made when the gateway started).
    people = [r for r in body["items"] if not r["aggregate_id"].startswith("admin-")]
    assert [r["aggregate_id"] for r in people] == audited.users and body["next"] is None
    assert len(body["items"]) == len(people) + 1
    first = people[0]
    assert first["actor"] == ADMIN_ACTOR and first["stream"] == "EVENTS_ACCT" and len(first["hash"]) == 64
    assert first["payload"]["event"]["username"].startswith("aud0-")

    _, p1 = await page(audited, actor=ADMIN_ACTOR, limit=2)
    assert len(p1["items"]) == 2 and p1["next"] == p1["items"][-1]["seq"]
    _, p2 = await page(audited, actor=ADMIN_ACTOR, limit=2, after=p1["next"])
    assert p2["items"] and p2["items"][0]["seq"] > p1["next"]
    _, desc = await page(audited, aggregate_type="user", aggregate_id=audited.users[1], order="desc")
    assert [r["type"] for r in desc["items"]] == ["PasswordChanged", "UserRegistered"]
    _, admin = await page(audited, type="AdminActionPerformed")
    assert {r["payload"]["event"]["action"] for r in admin["items"]} == {"register"}

    for bad in [{"limit": 0}, {"order": "sideways"}, {"since": "yesterday"}, {"after": "x"}, {"nope": 1},
                {"since": "2030-01-02T00:00:00Z", "until": "2030-01-01T00:00:00Z"}]:
        status, body = await page(audited, **bad)
        assert status == 422 and body["error"]["code"] == "VALIDATION_FAILED", bad
    _, token = await user_token(audited.client, "audit-user-" + audited.users[0][-8:])
    resp = await audited.client.get("/api/v1/audit", headers=bearer(token))
    assert resp.status == 403


async def test_verify_names_the_first_bad_record(audited: Audited) -> None:
    resp = await audited.client.post("/api/v1/audit/verify", json={}, headers=ADMIN)
    assert resp.status == 200
    report = await resp.json()
    msgspec.convert(report, schemas.VerifyReport)
    assert report["ok"] is True and report["first"] is None and report["records"] >= 6

    # One verification at a time, serialised in the audit service (not in this gateway replica).
    async with audited.service.reads.verifying:  # type: ignore[union-attr]
        resp = await audited.client.post("/api/v1/audit/verify", json={}, headers=ADMIN)
        body = await resp.json()
    assert resp.status == 503 and body["error"]["code"] == "AUDIT_BUSY" and resp.headers["Retry-After"]

    _, body = await page(audited, type="UserRegistered")
    victim = body["items"][1]["seq"]
    conn = await asyncpg.connect(audited.dsn)
    try:
        async with conn.transaction():
            await conn.execute("SET LOCAL session_replication_role = replica")
            await conn.execute("UPDATE audit.records SET actor = 'user:mallory' WHERE seq = $1", victim)
    finally:
        await conn.close()
    resp = await audited.client.post("/api/v1/audit/verify", json={"deep": True}, headers=ADMIN)
    report = await resp.json()
    assert resp.status == 200 and report["ok"] is False
    assert report["first"]["seq"] == victim and report["first"]["kind"] == "altered" and report["first"]["reason"]


async def test_without_the_audit_service_the_answer_is_503(nats_url: str, database_url: str,
                                                           unique_id: str) -> None:
    dsn = await fresh_database(database_url, "gwnoaudit")
    async with gateway_client(gateway_env(nats_url, dsn, AUDIT_CHAIN=f"none{unique_id}")) as client:
        resp = await client.get("/api/v1/audit", headers=ADMIN)
        assert resp.status == 503 and (await resp.json())["error"]["code"] == "AUDIT_UNAVAILABLE"
        assert resp.headers["Retry-After"]
        resp = await client.post("/api/v1/audit/verify", json={}, headers=ADMIN)
        body = await resp.json()
        assert resp.status == 503 and body["error"]["code"] == "AUDIT_UNAVAILABLE"
        assert "audit service" in body["error"]["message"]
