"""Pool endpoints against a real pool service on the marketplace simulator, real NATS and PostgreSQL.

One pool, one gateway for the module: the tests run in order, like an operator's session.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any, NamedTuple

import msgspec
import nats
import pytest
from aiohttp import test_utils

from services.gateway import schemas
from services.gateway.testing import (
    ADMIN,
    ADMIN_ACTOR,
    bearer,
    eventually,
    gateway_client,
    gateway_env,
    pool_on_sim,
    unique_pool_id,
    user_token,
)

pytestmark = pytest.mark.timeout(60)


class Stack(NamedTuple):
    client: test_utils.TestClient
    pool: Any
    user: str  # a signed-in user's session token


@pytest.fixture(scope="module")
async def stack(nats_url: str, database_url: str) -> AsyncIterator[Stack]:
    nc = await nats.connect(nats_url)
    pool_id = unique_pool_id()
    try:
        async with pool_on_sim(nc, nc.jetstream(), pool_id) as service, \
                gateway_client(gateway_env(nats_url, database_url, STOKER_POOL_ID=pool_id)) as client:
            _, token = await user_token(client, "pooluser-" + pool_id)
            yield Stack(client, service, token)
    finally:
        await nc.close()


async def pool(client: test_utils.TestClient, headers: dict[str, str] = ADMIN) -> dict[str, Any]:
    resp = await client.get("/api/v1/pool", headers=headers)
    assert resp.status == 200, await resp.text()
    return await resp.json()


def states(data: dict[str, Any]) -> list[str]:
    return [i["state"] for i in data["instances"]]


async def test_reading_the_pool_needs_a_credential(stack: Stack) -> None:
    resp = await stack.client.get("/api/v1/pool")
    assert resp.status == 401
    assert (await resp.json())["error"]["code"] == "AUTH_REQUIRED"
    resp = await stack.client.get("/api/v1/pool", headers={"X-Admin-Api-Key": "not-the-key"})
    assert resp.status == 401
    data = await pool(stack.client, bearer(stack.user))
    assert data["pool_id"] == stack.pool.config.pool_id and data["config"]["readiness"]["probe_timeout_s"] == 30


async def test_desired_size_brings_a_ready_instance_with_costs(stack: Stack) -> None:
    resp = await stack.client.put("/api/v1/pool/config", json={"desired_size": 1}, headers=ADMIN)
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["desired_size"] == 1
    assert (await pool(stack.client))["config"]["desired_size"] == 1  # read your own write

    data = await eventually(lambda: _ready(stack.client), timeout=30)
    [inst] = [i for i in data["instances"] if i["state"] == "ready"]
    msgspec.convert(data, schemas.PoolSummary)  # the documented response type is the real one
    assert inst["gpu"] and inst["dph"] > 0 and inst["uptime_s"] >= 0 and inst["base_url"]
    assert inst["accrued_cost"] >= 0 and inst["lease_holder"] is None and inst["status_message"] is not None
    as_user = await pool(stack.client, bearer(stack.user))
    [seen] = [i for i in as_user["instances"] if i["id"] == inst["id"]]
    assert seen["base_url"] is None and seen["provider_id"] is None and seen["state"] == "ready"


async def _ready(client: test_utils.TestClient) -> dict[str, Any] | None:
    data = await pool(client)
    return data if "ready" in states(data) else None


async def test_prewarm_and_terminate(stack: Stack) -> None:
    resp = await stack.client.post("/api/v1/pool/prewarm", json={"count": 1, "idempotency_key": "gw-k1"},
                                   headers=ADMIN)
    assert resp.status == 202, await resp.text()
    [iid] = (await resp.json())["instance_ids"]
    again = await stack.client.post("/api/v1/pool/prewarm", json={"count": 1, "idempotency_key": "gw-k1"},
                                    headers=ADMIN)
    assert (await again.json())["instance_ids"] == [iid]
    resp = await stack.client.post(f"/api/v1/pool/instances/{iid}/terminate", json={"reason": "test"}, headers=ADMIN)
    assert resp.status == 202 and (await resp.json()) == {"terminating": True}

    async def ended() -> bool:
        data = await pool(stack.client)
        return any(i["id"] == iid and i["state"] in ("terminated", "failed") for i in data["instances"])

    await eventually(ended, timeout=20)
    resp = await stack.client.post("/api/v1/pool/instances/no-such-instance/terminate", json={}, headers=ADMIN)
    assert resp.status == 404 and (await resp.json())["error"]["code"] == "NOT_FOUND"
    resp = await stack.client.post("/api/v1/pool/instances/bad%20id/terminate", json={}, headers=ADMIN)
    assert resp.status == 404


async def test_bad_input_is_refused_before_or_by_the_pool(stack: Stack) -> None:
    c = stack.client
    cases = [
        ({"desired_size": "two"}, 422), ({"desired_sise": 2}, 422), ({}, 422), ({"spend_caps": {"max_dph": "x"}}, 422),
        ({"desired_size": 9, "max_size": 2}, 422),  # valid shape; the pool refuses it
    ]
    for body, status in cases:
        resp = await c.put("/api/v1/pool/config", json=body, headers=ADMIN)
        data = await resp.json()
        assert resp.status == status, (body, data)
        assert data["error"]["code"] == "VALIDATION_FAILED" and data["error"]["message"]
    resp = await c.put("/api/v1/pool/config", data=b'{"desired_size": ', headers={**ADMIN, "Content-Type": "application/json"})
    assert resp.status == 400 and (await resp.json())["error"]["code"] == "VALIDATION_FAILED"
    resp = await c.put("/api/v1/pool/config", data=b'{"desired_size": 1}', headers={**ADMIN, "Content-Type": "text/plain"})
    assert resp.status == 415
    resp = await c.post("/api/v1/pool/prewarm", json={"count": 0}, headers=ADMIN)
    assert resp.status == 422
    resp = await c.post("/api/v1/pool/safe-mode", json={"enabled": "yes"}, headers=ADMIN)
    assert resp.status == 422


async def test_users_cannot_change_the_pool(stack: Stack) -> None:
    for method, path, body in [("PUT", "/api/v1/pool/config", {"desired_size": 0}),
                               ("POST", "/api/v1/pool/prewarm", {}), ("POST", "/api/v1/pool/reset", {}),
                               ("POST", "/api/v1/pool/safe-mode", {"enabled": True}),
                               ("POST", "/api/v1/pool/instances/x/terminate", {})]:
        resp = await stack.client.request(method, path, json=body, headers=bearer(stack.user))
        assert resp.status == 403, path
        assert (await resp.json())["error"]["code"] == "FORBIDDEN"
        resp = await stack.client.request(method, path, json=body)
        assert resp.status == 401, path


async def test_safe_mode_limit_and_reset_map_to_http(stack: Stack) -> None:
    c = stack.client
    resp = await c.post("/api/v1/pool/prewarm", json={"count": 64}, headers=ADMIN)
    assert resp.status == 409 and (await resp.json())["error"]["code"] == "LIMIT"
    resp = await c.post("/api/v1/pool/safe-mode", json={"enabled": True, "reason": "test"}, headers=ADMIN)
    assert resp.status == 200 and await resp.json() == {"safe_mode": True}
    assert (await pool(c))["safe_mode"] is True
    resp = await c.post("/api/v1/pool/prewarm", json={}, headers=ADMIN)
    assert resp.status == 409 and (await resp.json())["error"]["code"] == "SAFE_MODE"
    resp = await c.post("/api/v1/pool/safe-mode", json={"enabled": False}, headers=ADMIN)
    assert resp.status == 200
    resp = await c.post("/api/v1/pool/reset", json={"reason": "test"}, headers=ADMIN)
    assert resp.status == 200 and (await resp.json())["reset"] is True


async def test_live_stream_sends_a_snapshot_then_changes(stack: Stack) -> None:
    resp = await stack.client.get("/api/v1/stream", headers=bearer(stack.user))
    assert resp.status == 200 and resp.headers["Content-Type"].startswith("text/event-stream")

    async def next_event() -> tuple[str, dict[str, Any]]:
        kind, data = "", {}
        while True:
            line = (await resp.content.readline()).decode().rstrip("\n")
            if line.startswith("event: "):
                kind = line[7:]
            elif line.startswith("data: "):
                data = msgspec.json.decode(line[6:])
            elif line == "" and kind:
                return kind, data

    async with asyncio.timeout(10):
        kind, snapshot = await next_event()
        assert kind == "snapshot" and snapshot["pool_id"] == stack.pool.config.pool_id
        put = await stack.client.put("/api/v1/pool/config", json={"idle_timeout_s": 901}, headers=ADMIN)
        assert put.status == 200
        while True:
            kind, change = await next_event()
            if change.get("type") == "PoolConfigured":
                break
        assert kind == "pool" and change["config"]["idle_timeout_s"] == 901
    resp.close()


async def test_usage_and_metrics_show_the_instance(stack: Stack) -> None:
    resp = await stack.client.get("/api/v1/usage", headers=ADMIN)
    assert resp.status == 200, await resp.text()
    usage = await resp.json()
    msgspec.convert(usage, schemas.UsageReport)
    assert usage["total"]["cost"] > 0 and usage["total"]["gpu_hours"] > 0
    assert {"loading", "idle"} <= set(usage["by_state"])
    assert usage["days"][-1]["cost"] == pytest.approx(usage["total"]["cost"]) or len(usage["days"]) > 1
    resp = await stack.client.get("/api/v1/usage", headers=bearer(stack.user))
    assert resp.status == 403
    resp = await stack.client.get("/api/v1/usage?since=2024-02-01&until=2024-01-01", headers=ADMIN)
    assert resp.status == 422

    async def metrics() -> str | None:  # safe mode (an earlier test) ended the first instance; wait for its successor
        text = await (await stack.client.get("/metrics")).text()
        return text if 'stoker_pool_instances{state="ready"} 1' in text else None

    text = await eventually(metrics, timeout=20)
    assert 'stoker_http_requests_total{method="GET",route="/api/v1/pool",status="200"}' in text
    assert 'route="/api/v1/pool/instances/{id}/terminate",status="202"' in text
    assert "stoker_pool_spend_rate_dollars_per_hour " in text
    assert 'stoker_http_request_duration_seconds_bucket{method="GET",route="/api/v1/pool",le="+Inf"}' in text


async def test_admin_writes_are_events_and_history_replays_them(stack: Stack) -> None:
    c = stack.client
    actions: set[tuple[str, str]] = set()
    params = {"context": "acct", "type": "AdminActionPerformed", "actor": ADMIN_ACTOR, "limit": "500"}
    while True:  # every page: the whole suite shares the admin key and the stream, so there may be many
        resp = await c.get("/api/v1/events", params=params, headers=ADMIN)
        assert resp.status == 200
        page = await resp.json()
        actions |= {(i["data"]["action"], i["data"]["outcome"]) for i in page["items"]}
        if not page.get("next") or not page["items"]:
            break
        params["after"] = str(page["next"])
    assert {("configure_pool", "ok"), ("prewarm_pool", "ok"), ("terminate_instance", "NOT_FOUND"),
            ("prewarm_pool", "SAFE_MODE"), ("set_safe_mode", "ok"), ("reset_pool", "ok")} <= actions

    resp = await c.get("/api/v1/events", params={"aggregate_type": "config", "aggregate_id": stack.pool.config.pool_id,
                                                  "type": "PoolConfigured"}, headers=ADMIN)
    configured = (await resp.json())["items"]
    first_size_1 = next(i for i in configured if i["data"]["config"]["desired_size"] == 1)
    assert first_size_1["actor"] == ADMIN_ACTOR and first_size_1["correlation_id"]
    resp = await c.get("/api/v1/state", params={"at": first_size_1["id"]}, headers=ADMIN)
    assert resp.status == 200, await resp.text()
    then = await resp.json()
    msgspec.convert(then, schemas.StateAt)
    assert then["pool"]["config"]["desired_size"] == 1 and then["pool"]["instances"] == []
    assert then["event"]["id"] == first_size_1["id"] and then["seq"] == first_size_1["seq"]
    now = await pool(c)
    resp = await c.get("/api/v1/state", params={"at": "2100-01-01T00:00:00Z"}, headers=ADMIN)
    later = await resp.json()
    assert {i["id"] for i in later["pool"]["instances"]} == {i["id"] for i in now["instances"]}
