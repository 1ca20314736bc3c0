"""Two tenants on one warm instance: B cannot list or load A's private image, and nothing of A stays behind.

The attack of issue 12 item 1, end to end (NATS, PostgreSQL, the simulator's ComfyUI host, the
pool, generation and the gateway): A runs img2img with a private image; B, with
``/comfy/object_info`` and their own workflows, tries every way ComfyUI names a file.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import pytest
from aiohttp import test_utils

from libs.events import generation as ev
from services.gateway.testing import bearer, gateway_client, gateway_env, user_token
from services.generation import api
from services.generation.testing import Stack, eventually, gen_stack

pytestmark = pytest.mark.timeout(90)
TXT2IMG = {"template": "txt2img", "params": {"prompt": "a private portrait", "steps": 4, "width": 64, "height": 64}}


def load_image(name: str) -> dict[str, Any]:
    """B's workflow: load ``name`` from the instance and save it (what leaked A's image before)."""
    return {"1": {"class_type": "LoadImage", "inputs": {"image": name}},
            "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "stolen"}}}


async def host_file(base_url: str, auth: dict[str, str], folder: str, subfolder: str, filename: str) -> int:
    """Status of ``GET /view`` for one file on the instance itself (behind Stoker, not reachable by users)."""
    async with httpx.AsyncClient() as http:
        resp = await http.get(f"{base_url}/view", params={"filename": filename, "subfolder": subfolder,
                                                          "type": folder}, headers=auth)
    return resp.status_code


async def run(gen: Stack, user: str, payload: dict[str, Any]) -> tuple[str, list[Any]]:
    """Submit as ``user`` straight to the generation service; (job id, its recorded events) once completed."""
    job_id = (await gen.ok(api.SUBMIT, {"actor": "t", "user_id": user, **payload}))["job_id"]
    job = await gen.wait_status(user, job_id, timeout=40)
    assert job["status"] == "completed", job["error"]
    return job_id, [r.event for r in await gen.events(job_id)]


async def refused(client: test_utils.TestClient, token: str, workflow: dict[str, Any]) -> dict[str, Any]:
    """B posts ``workflow`` as a ComfyUI client and through the API; both must refuse it, naming the node."""
    resp = await client.post("/comfy/prompt", params={"token": token}, json={"prompt": workflow})
    assert resp.status == 400, await resp.text()
    data = await resp.json()
    assert data["node_errors"]["1"]["errors"][0]["type"] == "file_not_allowed", data
    resp = await client.post("/api/v1/generations", json={"workflow": workflow}, headers=bearer(token))
    assert resp.status == 422 or resp.status == 400, await resp.text()
    assert (await resp.json())["error"]["code"] in ("VALIDATION_FAILED", "BAD_REQUEST")
    return data


async def test_another_tenant_can_neither_list_nor_load_a_private_image(nats_url: str, database_url: str) -> None:
    async with asyncio.timeout(85), gen_stack(nats_url, instances=1) as gen, \
            gateway_client(gateway_env(nats_url, database_url, STOKER_POOL_ID=gen.pool_id)) as client:
        alice, _ = await user_token(client, "ialice-" + gen.pool_id)
        _, bob = await user_token(client, "ibob-" + gen.pool_id)
        [inst] = [i for i in gen.pool.view.instances.values() if i.phase == "ready"]
        base_url = inst.base_url
        assert base_url
        auth = {"Authorization": f"Bearer {gen.pool.reconciler.secret_for(inst.id)}"}  # Stoker's own, not users'

        # A file someone left at the top of the instance's input folder (a host that could not delete it).
        async with httpx.AsyncClient() as http:
            resp = await http.post(f"{base_url}/upload/image", files={"image": ("victim.png", b"\x89PNG left")},
                                   data={"type": "input", "overwrite": "true"}, headers=auth)
            assert resp.status_code == 200
        info = await (await client.get("/comfy/object_info", params={"token": bob})).json()
        assert info["LoadImage"]["input"]["required"]["image"][0] == []  # not B's: not listed
        one = await (await client.get("/comfy/object_info/LoadImage", params={"token": bob})).json()
        assert one["LoadImage"]["input"]["required"]["image"][0] == []
        await refused(client, bob, load_image("victim.png"))

        # A makes a private image, then runs img2img on it.
        first, events = await run(gen, alice, TXT2IMG)
        assert await host_file(base_url, auth, "input", "", "victim.png") == 404  # wiped when the instance was claimed
        [done] = [e for e in events if isinstance(e, ev.GenerationCompleted)]
        [private] = done.outputs
        assert await host_file(base_url, auth, "output", f"stoker/{first}", private.filename) == 404  # stored, then removed
        second, events = await run(gen, alice, {"template": "img2img", "params": {
            "prompt": "same, in blue", "image": private.object_name, "denoise": 0.4, "steps": 4}})
        [requested] = [e for e in events if isinstance(e, ev.GenerationRequested)]
        [placed] = requested.uploads
        sub, _, name = placed.rpartition("/")
        assert sub.startswith("stoker/") and len(sub.split("/")[1]) == 32  # the job's own unguessable folder

        async def gone() -> bool:
            return await host_file(base_url, auth, "input", sub, name) == 404
        await eventually(gone, 10)  # A's input does not outlive A's job

        # Knowing every name (which B could not), B still cannot load any of A's files.
        info = await (await client.get("/comfy/object_info", params={"token": bob})).json()
        assert info["LoadImage"]["input"]["required"]["image"][0] == []
        out = f"stoker/{first}/{private.filename}"
        for attempt in (placed, f"{placed} [input]", f"{out} [output]", f"{private.filename} [output]",
                        f"{private.filename} [temp]", f"../output/{out}", f"../input/{placed}", "../../etc/passwd",
                        f"stoker/{uuid.uuid4().hex}/image.png"):
            data = await refused(client, bob, load_image(attempt))
            assert attempt in data["node_errors"]["1"]["errors"][0]["details"]
        other = load_image("x")
        other["1"] = {"class_type": "LoadImageOutput", "inputs": {"image": f"{out} [output]"}}
        await refused(client, bob, other)
        other["1"] = {"class_type": "LoadImageMask", "inputs": {"image": placed, "channel": "alpha"}}
        await refused(client, bob, other)

        # The same workflow twice on this instance: ComfyUI would answer the second from its cache with the
        # first one's files, which are gone; each job's output nodes run again and the second one has its image.
        same = {"1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 7}},
                "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "same"}}}
        for _ in range(2):
            _, events = await run(gen, alice, {"workflow": same})
            [done] = [e for e in events if isinstance(e, ev.GenerationCompleted)]
            assert len(done.outputs) == 1
