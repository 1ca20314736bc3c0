"""How a generation was made, read back through the real stack: the gallery's settings, a workflow's LoRAs, the
recorded timeline, and the waiting reason safe mode gives (NATS, PostgreSQL, the simulator, pool, generation, gateway)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any, NamedTuple

import pytest
import pytest_asyncio
from aiohttp import test_utils

from services.gateway.testing import ADMIN, bearer, eventually, gateway_client, gateway_env, user_token
from services.generation.testing import Stack as GenStack
from services.generation.testing import gen_stack

pytestmark = pytest.mark.timeout(90)
LORA_WORKFLOW = {
    "1": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 48, "batch_size": 1, "color": 0x00FF00}},
    "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "lora"}},
    "3": {"class_type": "LoraLoaderModelOnly", "inputs": {"lora_name": "ink.safetensors", "strength_model": 0.7,
                                                          "model": ["1", 0]}},
}


class Stack(NamedTuple):
    client: test_utils.TestClient
    gen: GenStack
    user: dict[str, str]


@pytest_asyncio.fixture(scope="module")
async def stack(nats_url: str, database_url: str) -> AsyncIterator[Stack]:
    async with asyncio.timeout(60), gen_stack(nats_url, instances=1) as gen, \
            gateway_client(gateway_env(nats_url, database_url, STOKER_POOL_ID=gen.pool_id)) as client:
        _, token = await user_token(client, "settings-" + gen.pool_id)
        yield Stack(client, gen, bearer(token))


async def call(stack: Stack, method: str, path: str, body: Any = None, status: int = 200,
               headers: dict[str, str] | None = None) -> Any:
    resp = await stack.client.request(method, path, json=body, headers=headers or stack.user)
    assert resp.status == status, await resp.text()
    return await resp.json()


async def finished(stack: Stack, job_id: str) -> dict[str, Any]:
    async def done() -> dict[str, Any] | None:
        job = await call(stack, "GET", f"/api/v1/generations/{job_id}")
        return job if job["status"] not in ("queued", "running") else None
    return await eventually(done, timeout=40)


async def test_the_gallery_and_the_generation_say_how_an_output_was_made(stack: Stack) -> None:
    made = await call(stack, "POST", "/api/v1/generations", {"template": "txt2img", "prompt": "a heron", "seed": 11,
                                                             "negative_prompt": "fog", "steps": 5, "width": 128,
                                                             "height": 64, "preset": "low"}, 201)
    job = await finished(stack, made["id"])
    assert job["status"] == "completed", job
    kinds = [m["kind"] for m in job["timeline"]]
    assert kinds == ["queued", "claimed", "started", "completed"], kinds
    times = [datetime.fromisoformat(m["at"]) for m in job["timeline"]]
    assert times == sorted(times) and times[0] == datetime.fromisoformat(job["created_at"])
    assert times[-1] == datetime.fromisoformat(job["finished_at"])  # the steps' own times, not when they were read
    [item] = (await call(stack, "GET", "/api/v1/gallery"))["items"]
    s = item["settings"]
    assert (s["template"], s["preset"], s["params"]["prompt"], s["params"]["negative_prompt"], s["params"]["seed"],
            s["params"]["width"], s["params"]["height"], s["params"]["steps"]) == (
        "txt2img", "low", "a heron", "fog", 11, 128, 64, 5)
    assert s["checkpoint"] and s["loras"] == [] and s["muse_id"] is None

    own = await call(stack, "POST", "/api/v1/generations", {"workflow": LORA_WORKFLOW}, 201)
    read = await call(stack, "GET", f"/api/v1/generations/{own['id']}")
    assert read["loras"] == [{"name": "ink.safetensors", "strength_model": 0.7, "strength_clip": None}]
    listed = {j["id"]: j for j in (await call(stack, "GET", "/api/v1/generations"))["items"]}
    assert listed[own["id"]]["loras"][0]["name"] == "ink.safetensors"
    await finished(stack, own["id"])


async def test_a_job_waiting_in_safe_mode_says_so_without_an_estimate(stack: Stack) -> None:
    await call(stack, "POST", "/api/v1/pool/safe-mode", {"enabled": True, "reason": "budget_day"}, headers=ADMIN)
    try:
        async def emptied() -> bool:  # safe mode terminates every instance; a job must not catch one on its way out
            pool = await call(stack, "GET", "/api/v1/pool", headers=ADMIN)
            return all(i["state"] in ("terminated", "failed") for i in pool["instances"])
        await eventually(emptied, timeout=20)
        made = await call(stack, "POST", "/api/v1/generations", {"template": "txt2img", "prompt": "a wren"}, 201)

        async def waiting() -> dict[str, Any] | None:
            job = await call(stack, "GET", f"/api/v1/generations/{made['id']}")
            return job["waiting"] if job["waiting"] and job["waiting"]["reason"] == "safe_mode" else None
        why = await eventually(waiting, timeout=20)
        assert "daily spend cap" in why["message"] and why["expected_wait_s"] is None
        cancelled = await call(stack, "POST", f"/api/v1/generations/{made['id']}/cancel")
        assert cancelled["status"] == "cancelled"
        assert [m["kind"] for m in cancelled["timeline"]][-1] == "cancelled"
    finally:
        await call(stack, "POST", "/api/v1/pool/safe-mode", {"enabled": False, "reason": "test"}, headers=ADMIN)
