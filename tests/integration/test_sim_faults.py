"""Vast API semantics and the fault knobs, over HTTP with aiohttp."""

import asyncio
from typing import Any

import aiohttp
import pytest

from services.pool.sim import SimServer
from services.pool.sim.testing import FAST_CONFIG, eventually, rent_comfy, vast_headers, vast_json

CREATE = {"client_id": "me", "image": "vastai/comfy:latest", "env": {"-p 8188:8188": "1"}, "disk": 30.0,
          "label": "pool-a", "runtype": "ssh"}




async def control(session: aiohttp.ClientSession, sim: SimServer, method: str, path: str,
                  body: Any = None) -> tuple[int, Any]:
    async with session.request(method, sim.url + "/_sim" + path, json=body) as resp:
        return resp.status, await resp.json()


async def create(session: aiohttp.ClientSession, sim: SimServer, index: int = 0) -> int:
    _, found = await vast_json(session, sim, "POST", "/api/v0/bundles/", {"rentable": {"eq": True}})
    status, body = await vast_json(session, sim, "PUT", f"/api/v0/asks/{found['offers'][index]['id']}/", CREATE)
    assert status == 200, body
    return int(body["new_contract"])


async def show(session: aiohttp.ClientSession, sim: SimServer, iid: int) -> dict[str, Any] | None:
    _, body = await vast_json(session, sim, "GET", f"/api/v0/instances/{iid}/", params={"owner": "me"})
    return body["instances"]


async def test_content_type_auth_and_429(sim: SimServer, session: aiohttp.ClientSession) -> None:
    async with asyncio.timeout(20):
        async with session.post(sim.url + "/api/v0/bundles/", json={}, headers=vast_headers()) as resp:
            assert resp.status == 200 and resp.headers["Content-Type"] == "application/json"
            assert len((await resp.json())["offers"]) > 20
        async with session.get(sim.url + "/api/v0/users/current") as resp:
            assert resp.status == 401 and "msg" in await resp.json()
        await control(session, sim, "PUT", "/config", {"api_key": "right"})
        async with session.get(sim.url + "/api/v0/users/current", headers=vast_headers("wrong")) as resp:
            assert resp.status == 401 and (await resp.json())["msg"] == "Invalid user key"
        async with session.get(sim.url + "/api/v0/users/current", headers=vast_headers("right")) as resp:
            assert resp.status == 200
        async with session.get(sim.url + "/api/v0/gpu_names/unique/") as resp:
            assert "RTX 4090" in (await resp.json())["gpu_names"]
        status, body = await control(session, sim, "PUT", "/config",
                                     {"api_key": None, "rate_limit_burst_rate": 1.0, "rate_limit_burst_length": 2,
                                      "rate_limit_retry_after": 1.5})
        assert status == 200 and body["rate_limit_burst_rate"] == 1.0
        async with session.get(sim.url + "/api/v0/users/current", headers=vast_headers()) as resp:
            assert resp.status == 429 and resp.headers["Retry-After"] == "1.5"
            assert resp.headers["Content-Type"] == "application/json" and (await resp.json())["msg"]
        status, _ = await control(session, sim, "PUT", "/config", {"no_such_knob": 1})
        assert status == 400


async def test_create_list_pagination_and_errors(sim: SimServer, session: aiohttp.ClientSession) -> None:
    async with asyncio.timeout(20):
        ids = [await create(session, sim, 0) for _ in range(3)]
        await vast_json(session, sim, "PUT", f"/api/v0/instances/{ids[2]}/", {"label": "pool-b"})
        params = {"select_filters": "{}", "order_by": '[{"col": "id", "dir": "asc"}]', "limit": "2"}
        _, page1 = await vast_json(session, sim, "GET", "/api/v1/instances/", params=params)
        assert [r["id"] for r in page1["instances"]] == ids[:2] and page1["total_instances"] == 3
        assert page1["label_counts"] == {"pool-a": 2, "pool-b": 1} and page1["next_token"]
        _, page2 = await vast_json(session, sim, "GET", "/api/v1/instances/",
                                   params={**params, "after_token": page1["next_token"]})
        assert [r["id"] for r in page2["instances"]] == ids[2:] and page2["next_token"] is None
        _, only_b = await vast_json(session, sim, "GET", "/api/v1/instances/",
                                    params={**params, "select_filters": '{"label": {"in": ["pool-b"]}}',
                                            "select_cols": '["label"]'})
        assert only_b["instances"] == [{"id": ids[2], "label": "pool-b"}]
        _, running = await vast_json(session, sim, "GET", "/api/v1/instances/", params={
            **params, "select_filters": '{"actual_status": {"in": ["running"]}}'})
        assert running["instances"] == []  # still scheduling
        status, body = await vast_json(session, sim, "PUT", "/api/v0/asks/1/", CREATE)
        assert status == 404 and body["success"] is False and body["msg"]
        status, body = await vast_json(session, sim, "DELETE", "/api/v0/instances/1/")
        assert status == 404 and body["msg"]
        _, body = await vast_json(session, sim, "DELETE", "/api/v0/instances/", {"instance_ids": ids})
        assert body == {"success": True}
        assert (await control(session, sim, "GET", "/billing"))[1]["billing_instance_ids"] == []


async def test_listing_lag(sim: SimServer, session: aiohttp.ClientSession) -> None:
    async with asyncio.timeout(20):
        await control(session, sim, "PUT", "/config", {"listing_lag": 0.4})
        iid = await create(session, sim)
        assert await show(session, sim, iid) is None
        _, listed = await vast_json(session, sim, "GET", "/api/v1/instances/")
        assert listed["instances"] == []
        _, billing = await control(session, sim, "GET", "/billing")
        assert billing["billing_instance_ids"] == [iid]
        row = await eventually(lambda: show(session, sim, iid))
        assert row["id"] == iid


async def test_zombie_terminate(sim: SimServer, session: aiohttp.ClientSession) -> None:
    async with asyncio.timeout(20):
        await control(session, sim, "POST", "/faults", {"zombie_terminates": 1})
        iid = await create(session, sim)
        status, body = await vast_json(session, sim, "DELETE", f"/api/v0/instances/{iid}/")
        assert status == 200 and body == {"success": True}
        await asyncio.sleep(0.1)
        assert (await show(session, sim, iid)) is not None
        _, snap = await control(session, sim, "GET", "/state")
        assert snap["billing_instance_ids"] == [iid] and snap["instances"][0]["zombie_deletes"] == 1
        status, body = await vast_json(session, sim, "DELETE", f"/api/v0/instances/{iid}/")
        assert status == 200 and await show(session, sim, iid) is None
        assert (await control(session, sim, "GET", "/billing"))[1]["billing_instance_ids"] == []


async def test_extraction_failure_keeps_billing(sim: SimServer, session: aiohttp.ClientSession) -> None:
    async with asyncio.timeout(20):
        _, forced = await control(session, sim, "POST", "/faults", {"extraction_failures": 1})
        assert forced["extraction_failures"] == 1
        iid = await create(session, sim)

        async def failed() -> dict[str, Any] | None:
            row = await show(session, sim, iid)
            return row if row and row["status_msg"] and "Error" in row["status_msg"] else None
        row = await eventually(failed)
        assert row["status_msg"].startswith("Error response from daemon: failed to register layer")
        assert row["actual_status"] == "created" and row["intended_status"] == "running"
        _, first = await control(session, sim, "GET", "/billing")
        await asyncio.sleep(0.1)
        _, second = await control(session, sim, "GET", "/billing")
        assert first["billing_instance_ids"] == [iid] and second["total_billed_usd"] > first["total_billed_usd"]
        _, logs = await vast_json(session, sim, "PUT", f"/api/v0/instances/request_logs/{iid}/", {"tail": "50"})
        async with session.get(logs["result_url"]) as resp:  # no auth header, like the CLI
            assert resp.status == 200 and row["status_msg"] in await resp.text()


async def test_vanish_kills_host_and_stops_billing(sim: SimServer, session: aiohttp.ClientSession) -> None:
    async with asyncio.timeout(20):
        iid, url = await rent_comfy(session, sim)
        status, _ = await control(session, sim, "POST", f"/instances/{iid}/vanish")
        assert status == 200
        assert await show(session, sim, iid) is None
        with pytest.raises(aiohttp.ClientConnectionError):
            async with session.get(url + "/system_stats") as resp:
                await resp.read()
        _, snap = await control(session, sim, "GET", "/state")
        assert snap["billing_instance_ids"] == [] and snap["instances"][0]["phase"] == "vanished"
        status, _ = await control(session, sim, "POST", f"/instances/{iid}/vanish")
        assert status == 404
        _, snap = await control(session, sim, "POST", "/reset", {})
        assert snap["instances"] == [] and snap["offers_total"] == FAST_CONFIG.offer_count
