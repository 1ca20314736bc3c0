"""Policies over the gateway: apply (admin only, an event), bad specs refused, simulate on the pool's history."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, NamedTuple

import nats
import pytest
from aiohttp import test_utils

from services.gateway.testing import ADMIN, bearer, eventually, gateway_client, gateway_env, pool_on_sim, \
    unique_pool_id, user_token

pytestmark = pytest.mark.timeout(90)


class Stack(NamedTuple):
    client: test_utils.TestClient
    pool: Any
    user: str


@pytest.fixture(scope="module")
async def stack(nats_url: str, database_url: str) -> AsyncIterator[Stack]:
    nc = await nats.connect(nats_url)
    pool_id = unique_pool_id()
    try:
        async with pool_on_sim(nc, nc.jetstream(), pool_id) as service, \
                gateway_client(gateway_env(nats_url, database_url, STOKER_POOL_ID=pool_id)) as client:
            _, token = await user_token(client, "policyuser-" + pool_id)
            yield Stack(client, service, token)
    finally:
        await nc.close()


async def test_only_an_admin_applies_a_policy(stack: Stack) -> None:
    body = {"policy": {"kind": "reactive", "params": {"idle_s": 60}}}
    resp = await stack.client.put("/api/v1/pool/policy", json=body, headers=bearer(stack.user))
    assert resp.status == 403


@pytest.mark.parametrize("policy, fragment", [
    ({"kind": "nope"}, "kind"),
    ({"kind": "fixed", "params": {"x": 1}}, "no parameter"),
])
async def test_a_bad_policy_is_a_clear_422(stack: Stack, policy: dict[str, Any], fragment: str) -> None:
    resp = await stack.client.put("/api/v1/pool/policy", json={"policy": policy}, headers=ADMIN)
    assert resp.status == 422, await resp.text()
    err = (await resp.json())["error"]
    assert err["code"] == "VALIDATION_FAILED" and fragment in err["message"]


async def test_an_applied_policy_shows_its_decisions_with_reasons(stack: Stack) -> None:
    resp = await stack.client.put("/api/v1/pool/policy", headers=ADMIN,
                                  json={"policy": {"kind": "fixed", "params": {"n": 1}}, "reason": "keep one"})
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["name"] == "fixed(n=1)"

    async def decided() -> Any:
        data = await (await stack.client.get("/api/v1/pool", headers=ADMIN)).json()
        return data.get("policy_decisions") and data

    data = await eventually(decided, timeout=30)
    assert data["policy"]["kind"] == "fixed"
    assert "keep 1 warm" in data["policy_decisions"][0]["reason"]


async def test_simulate_replays_the_pool_s_claims(stack: Stack) -> None:
    resp = await stack.client.post("/api/v1/pool/simulate", json={"days": 1}, headers=ADMIN)
    assert resp.status == 404, "no claims yet: nothing to simulate"
    assert (await resp.json())["error"]["code"] == "NOT_FOUND"
    ready = await eventually(lambda: [i for i in stack.pool.view.instances.values() if i.phase == "ready"], timeout=30)
    assert ready
    from services.pool import api
    claim = await stack.pool.commands.claim(api.ClaimRequest(holder="job-1"))
    await stack.pool.commands.release(api.ReleaseRequest(instance_id=claim.instance_id, lease_id=claim.lease_id))
    resp = await stack.client.post("/api/v1/pool/simulate", headers=ADMIN,
                                   json={"days": 1, "policies": [{"kind": "seed"}, {"kind": "reactive"}],
                                         "target_p95": 600})
    assert resp.status == 200, await resp.text()
    out = await resp.json()
    assert out["jobs"] == 1 and [r["policy"] for r in out["rows"]] == ["seed", "reactive(idle=2 min)"]
    assert out["oracle_zero_wait"] > 0 and out["chosen"] in ("seed", "reactive(idle=2 min)")
    bad = await stack.client.post("/api/v1/pool/simulate", json={"days": 0}, headers=ADMIN)
    assert bad.status == 422
