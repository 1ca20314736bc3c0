"""Own boxes through the gateway: an admin makes a join token, `stoker agent --join`'s client joins and
heartbeats with it, the list never shows the token, a revoked token is refused with 401."""

from __future__ import annotations

import aiohttp
import nats
import pytest

from services.agent.join import JoinError, join
from services.gateway.testing import ADMIN, gateway_client, gateway_env, pool_on_sim, unique_pool_id

pytestmark = pytest.mark.timeout(60)


async def test_join_token_lifecycle_over_http(nats_url: str, database_url: str) -> None:
    nc = await nats.connect(nats_url)
    pool_id = unique_pool_id()
    try:
        async with pool_on_sim(nc, nc.jetstream(), pool_id) as service, \
                gateway_client(gateway_env(nats_url, database_url, STOKER_POOL_ID=pool_id)) as client:
            resp = await client.post("/api/v1/pool/join-tokens", json={"label": "studio", "dph": 0.05}, headers=ADMIN)
            assert resp.status == 201, await resp.text()
            made = await resp.json()
            assert made["token"].startswith("stj-") and made["dph"] == 0.05
            resp = await client.post("/api/v1/pool/join-tokens", json={"label": "x"})
            assert resp.status == 401  # admins only

            gateway = str(client.make_url("")).rstrip("/")
            async with aiohttp.ClientSession() as session:
                joined = await join(session, gateway, made["token"], "http://10.0.0.7:8188", "box-a", "RTX 3090")
                assert joined["node_id"] and len(joined["secret"]) == 64 and joined["heartbeat_s"] > 0
                with pytest.raises(JoinError) as bad:
                    await join(session, gateway, "stj-nope-0000000000", "http://10.0.0.7:8188", "box-b")
                assert "401" in str(bad.value) and "unknown join token" in str(bad.value)
            resp = await client.post("/api/v1/agents/heartbeat", json={"token": made["token"],
                                                                       "node_id": joined["node_id"]})
            assert resp.status == 200 and (await resp.json()) == {"ok": True}
            resp = await client.post("/api/v1/agents/join", json={"token": made["token"], "url": "ftp://x", "name": "b"})
            assert resp.status == 422 and (await resp.json())["error"]["code"] == "VALIDATION_FAILED"

            listed = await (await client.get("/api/v1/pool/join-tokens", headers=ADMIN)).json()
            [item] = [i for i in listed["items"] if i["token_id"] == made["token_id"]]
            assert item["nodes"] == ["box-a"] and not item["revoked"] and made["token"] not in str(listed)
            assert service.view.nodes[joined["node_id"]].url == "http://10.0.0.7:8188"

            resp = await client.delete(f"/api/v1/pool/join-tokens/{made['token_id']}", headers=ADMIN)
            assert resp.status == 200 and (await resp.json()) == {"revoked": True}
            resp = await client.post("/api/v1/agents/join", json={"token": made["token"], "url": "http://h:1",
                                                                  "name": "box-a"})
            assert resp.status == 401 and "revoked" in (await resp.json())["error"]["message"]
            resp = await client.post("/api/v1/agents/heartbeat", json={"token": made["token"],
                                                                       "node_id": joined["node_id"]})
            assert resp.status == 401
    finally:
        await nc.close()
