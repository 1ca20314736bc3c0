"""The ComfyUI-compatible API (``/comfy/``) driven like a ComfyUI client, against the real stack: NATS,
PostgreSQL, the marketplace simulator's ComfyUI host, the real pool and generation services, the gateway.

The client code below is what a script written for a plain ComfyUI server does (see
/work/shared/specs/comfyui-api.md, section 8), with ``?token=`` added to its URLs.
"""

from __future__ import annotations

import asyncio
import io
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any, NamedTuple

import msgspec
import pytest
import pytest_asyncio
from aiohttp import ClientWebSocketResponse, WSMsgType, test_utils
from PIL import Image

from services.gateway.schemas import comfy as c
from services.gateway.testing import ADMIN, bearer, gateway_client, gateway_env, user_token
from services.generation.testing import gen_stack

pytestmark = pytest.mark.timeout(60)


def txt2img(steps: int = 4, size: int = 64, prefix: str = "fox") -> dict[str, Any]:
    """ComfyUI's default workflow, API format."""
    return {
        "3": {"class_type": "KSampler", "inputs": {"seed": 5, "steps": steps, "cfg": 7.0, "sampler_name": "euler",
                                                   "scheduler": "normal", "denoise": 1.0, "model": ["4", 0],
                                                   "positive": ["6", 0], "negative": ["7", 0],
                                                   "latent_image": ["5", 0]}},
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sd15.safetensors"}},
        "5": {"class_type": "EmptyLatentImage", "inputs": {"width": size, "height": size, "batch_size": 1}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a fox", "clip": ["4", 1]}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["4", 1]}},
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
        "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": prefix, "images": ["8", 0]}},
    }


class Stack(NamedTuple):
    client: test_utils.TestClient
    alice: str  # tokens
    bob: str


@pytest_asyncio.fixture(scope="module")
async def stack(nats_url: str, database_url: str) -> AsyncIterator[Stack]:
    async with asyncio.timeout(60), gen_stack(nats_url, instances=1) as gen, \
            gateway_client(gateway_env(nats_url, database_url, STOKER_POOL_ID=gen.pool_id)) as client:
        _, alice = await user_token(client, "calice-" + gen.pool_id)
        _, bob = await user_token(client, "cbob-" + gen.pool_id)
        yield Stack(client, alice, bob)


async def frames_until_done(ws: ClientWebSocketResponse, prompt_id: str) -> list[dict[str, Any]]:
    """Socket frames up to ``executing`` with ``node: null`` for the prompt (ComfyUI's "prompt done")."""
    frames = []
    async with asyncio.timeout(30):
        while True:
            msg = await ws.receive()
            assert msg.type == WSMsgType.TEXT, msg
            frame = msgspec.json.decode(msg.data)
            frames.append(frame)
            data = frame["data"]
            if frame["type"] == "executing" and data["node"] is None and data.get("prompt_id") == prompt_id:
                return frames


async def test_a_comfyui_client_runs_a_prompt_and_fetches_the_image(stack: Stack) -> None:
    st = stack
    client_id = uuid.uuid4().hex
    token = {"token": st.alice}
    ws = await st.client.ws_connect("/comfy/ws", params={"clientId": client_id, **token})
    hello = await ws.receive_json(timeout=5)
    assert hello == {"type": "status", "data": {"status": {"exec_info": {"queue_remaining": 0}}, "sid": client_id}}

    # As ComfyUI's own example script posts it: urllib's default content type, the JSON as the body.
    resp = await st.client.post("/comfy/prompt", params=token,
                                data=json.dumps({"prompt": txt2img(), "client_id": client_id}).encode(),
                                headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert resp.status == 200, await resp.text()
    queued = await resp.json()
    msgspec.convert(queued, c.ComfyPromptResult)
    prompt_id = queued["prompt_id"]
    assert queued["node_errors"] == {} and isinstance(queued["number"], int)

    frames = await frames_until_done(ws, prompt_id)
    mine = [f for f in frames if f["data"].get("prompt_id") == prompt_id]
    kinds = [f["type"] for f in mine]
    assert kinds[0] == "execution_start" and kinds[-1] == "executing"
    assert kinds[-2:] == ["execution_success", "executing"] or kinds[-3:] == ["execution_success", "status",
                                                                              "executing"]
    assert kinds.index("execution_start") < kinds.index("executing") < kinds.index("progress") < kinds.index(
        "executed") < kinds.index("execution_success")
    steps = [f["data"]["value"] for f in mine if f["type"] == "progress"]
    assert steps == sorted(steps) and all(f["data"]["max"] == 4 for f in mine if f["type"] == "progress")
    [executed] = [f["data"] for f in mine if f["type"] == "executed"]
    assert executed["node"] == "9" and executed["display_node"] == "9"
    [image] = executed["output"]["images"]
    assert image["subfolder"] == prompt_id and image["type"] == "output" and image["filename"].startswith("fox")
    assert frames[-2]["type"] == "status" or "status" in [f["type"] for f in frames]  # queue_remaining updates
    await ws.close()

    resp = await st.client.get(f"/comfy/history/{prompt_id}", params=token)
    history = await resp.json()
    entry = history[prompt_id]
    msgspec.convert(entry, c.ComfyHistoryEntry)
    assert entry["outputs"] == {"9": executed["output"]}
    assert entry["status"]["status_str"] == "success" and entry["status"]["completed"] is True
    assert [m[0] for m in entry["status"]["messages"]] == ["execution_start", "execution_cached", "execution_success"]
    number, pid, workflow, extra, outputs = entry["prompt"]
    assert pid == prompt_id and number == queued["number"] and workflow == txt2img()
    assert extra == {"client_id": client_id} and outputs == ["9"]

    resp = await st.client.get("/comfy/view", params={**image, **token})
    assert resp.status == 200 and resp.headers["Content-Type"] == "image/png"
    assert image["filename"] in resp.headers["Content-Disposition"]
    png = Image.open(io.BytesIO(await resp.read()))
    assert png.format == "PNG" and png.size == (64, 64)
    # A bearer header works as well as ?token=; the whole history has the entry.
    everything = await (await st.client.get("/comfy/history", headers=bearer(st.alice))).json()
    assert prompt_id in everything
    latest = await (await st.client.get("/comfy/history", params={"max_items": "1"}, headers=bearer(st.alice))).json()
    assert list(latest) == [list(everything)[-1]]


async def test_a_client_chosen_prompt_id_and_the_400_validation_shape(stack: Stack) -> None:
    st = stack
    token = {"token": st.alice}
    mine = str(uuid.uuid4())
    resp = await st.client.post("/comfy/prompt", params=token, json={"prompt": txt2img(steps=2), "prompt_id": mine})
    assert resp.status == 200 and (await resp.json())["prompt_id"] == mine

    async def history() -> dict[str, Any]:
        while True:
            data = await (await st.client.get(f"/comfy/history/{mine}", params=token)).json()
            if data:
                return data
            await asyncio.sleep(0.1)

    async with asyncio.timeout(30):
        assert (await history())[mine]["status"]["status_str"] == "success"

    broken = txt2img()
    broken["8"]["inputs"]["samples"] = ["99", 0]
    resp = await st.client.post("/comfy/prompt", params=token, json={"prompt": broken})
    assert resp.status == 400
    data = await resp.json()
    assert set(data) == {"error", "node_errors"}
    assert set(data["error"]) == {"type", "message", "details", "extra_info"}
    assert data["error"]["type"] == "prompt_outputs_failed_validation"
    assert data["node_errors"]["8"]["class_type"] == "VAEDecode"
    assert "'99'" in data["node_errors"]["8"]["errors"][0]["details"]

    for payload, kind in (({}, "no_prompt"), ({"prompt": {}}, "prompt_no_outputs"),
                          ({"prompt": {"1": {"class_type": "EmptyImage", "inputs": {}}}}, "prompt_no_outputs")):
        resp = await st.client.post("/comfy/prompt", params=token, json=payload)
        assert resp.status == 400 and (await resp.json())["error"]["type"] == kind, payload
    resp = await st.client.post("/comfy/prompt", params=token, json={"prompt": txt2img(), "bogus": 1})
    assert resp.status == 422  # an unknown field: the house error shape
    assert (await st.client.post("/comfy/prompt", json={"prompt": txt2img()})).status == 401
    assert (await st.client.post("/comfy/prompt", params={"token": "stk_" + "A" * 43},
                                 json={"prompt": txt2img()})).status == 401
    assert (await st.client.get("/comfy/ws", params={"clientId": "x"})).status == 401
    assert (await st.client.get("/comfy/ws", params={"clientId": "x", **token})).status == 400  # no upgrade


async def test_users_only_see_their_own_prompts(stack: Stack) -> None:
    st = stack
    alice, bob = {"token": st.alice}, {"token": st.bob}
    bob_ws = await st.client.ws_connect("/comfy/ws", params={"clientId": "shared-id", **bob})
    await bob_ws.receive_json(timeout=5)
    alice_ws = await st.client.ws_connect("/comfy/ws", params={"clientId": "shared-id", **alice})
    await alice_ws.receive_json(timeout=5)
    resp = await st.client.post("/comfy/prompt", params=alice, json={"prompt": txt2img(steps=2),
                                                                     "client_id": "shared-id"})
    prompt_id = (await resp.json())["prompt_id"]
    frames = await frames_until_done(alice_ws, prompt_id)
    image = next(f["data"]["output"]["images"][0] for f in frames if f["type"] == "executed")
    with pytest.raises(TimeoutError):
        await bob_ws.receive_json(timeout=0.5)  # the same client id under another user: nothing
    await alice_ws.close()
    await bob_ws.close()

    assert await (await st.client.get(f"/comfy/history/{prompt_id}", params=bob)).json() == {}
    assert prompt_id not in await (await st.client.get("/comfy/history", params=bob)).json()
    assert (await st.client.get("/comfy/view", params={**image, **bob})).status == 404
    assert (await st.client.get("/comfy/view", params={**image, **alice})).status == 200
    assert (await st.client.get("/comfy/view", params={**image, "subfolder": "", **alice})).status == 200
    assert (await st.client.get("/comfy/view", params={**image, "type": "bogus", **alice})).status == 400
    assert (await st.client.get("/comfy/view", params={**image, "subfolder": "../..", **alice})).status == 403
    assert (await st.client.get("/comfy/view", params={**image, "type": "input", **alice})).status == 404
    assert (await st.client.get("/comfy/view", params=alice)).status == 404


async def test_queue_and_interrupt(stack: Stack) -> None:
    st = stack
    token = {"token": st.alice}
    client_id = uuid.uuid4().hex
    ws = await st.client.ws_connect("/comfy/ws", params={"clientId": client_id, **token})
    await ws.receive_json(timeout=5)
    resp = await st.client.post("/comfy/prompt", params=token,
                                json={"prompt": txt2img(steps=150, size=1024), "client_id": client_id})
    prompt_id = (await resp.json())["prompt_id"]
    async with asyncio.timeout(20):
        while True:
            queue = await (await st.client.get("/comfy/queue", params=token)).json()
            if [item[1] for item in queue["queue_running"]] == [prompt_id]:
                break
            await asyncio.sleep(0.05)
    msgspec.convert(queue, c.ComfyQueue)
    number, pid, workflow, extra, outputs = queue["queue_running"][0]
    assert workflow == txt2img(steps=150, size=1024) and extra == {"client_id": client_id} and outputs == ["9"]
    assert (await (await st.client.get("/comfy/prompt", params=token)).json()) == {
        "exec_info": {"queue_remaining": 1}}
    assert (await (await st.client.get("/comfy/queue", params={"token": st.bob})).json()) == {
        "queue_running": [], "queue_pending": []}
    resp = await st.client.post("/comfy/interrupt", params={"token": st.bob}, json={})
    assert resp.status == 200 and await resp.read() == b""  # bob has nothing running: a no-op

    resp = await st.client.post("/comfy/interrupt", params=token, json={"prompt_id": prompt_id})
    assert resp.status == 200 and await resp.read() == b""
    frames = await frames_until_done(ws, prompt_id)
    assert "execution_interrupted" in [f["type"] for f in frames] and "execution_success" not in [
        f["type"] for f in frames]
    entry = (await (await st.client.get(f"/comfy/history/{prompt_id}", params=token)).json())[prompt_id]
    assert entry["status"]["status_str"] == "error" and entry["status"]["messages"][-1][0] == "execution_interrupted"
    assert entry["outputs"] == {}
    await ws.close()


async def test_system_stats_and_object_info_come_from_an_instance(stack: Stack) -> None:
    st = stack
    token = {"token": st.bob}
    resp = await st.client.get("/comfy/system_stats", params=token)
    stats = await resp.json()
    msgspec.convert(stats, c.ComfySystemStats)
    assert resp.headers["X-Stoker-Source"] == "instance" and stats["system"]["comfyui_version"] == "0.3.64"
    assert stats["devices"][0]["type"] == "cuda"
    resp = await st.client.get("/comfy/object_info", headers=bearer(st.bob))
    info = await resp.json()
    assert resp.headers["X-Stoker-Source"] == "instance"
    assert info["CheckpointLoaderSimple"]["input"]["required"]["ckpt_name"][0] == ["sd15.safetensors"]
    one = await (await st.client.get("/comfy/object_info/KSampler", params=token)).json()
    assert list(one) == ["KSampler"] and one["KSampler"] == info["KSampler"]
    assert await (await st.client.get("/comfy/object_info/NoSuchNode", params=token)).json() == {}
    resp = await st.client.get("/comfy/object_info", params=token)
    assert resp.headers["X-Stoker-Source"] == "instance"  # cached: the same answer
    resp = await st.client.get("/comfy/api/system_stats", params=token)  # ComfyUI's /api/ spelling
    assert resp.status == 200 and (await resp.json()) == stats
    assert (await st.client.get("/comfy/system_stats")).status == 401
    assert (await st.client.get("/comfy/system_stats", headers=ADMIN)).status == 200


async def test_the_admin_key_runs_a_comfyui_prompt_as_its_account(stack: Stack) -> None:
    st = stack
    client_id = uuid.uuid4().hex
    ws = await st.client.ws_connect("/comfy/ws", params={"clientId": client_id}, headers=ADMIN)
    await ws.receive_json(timeout=5)
    resp = await st.client.post("/comfy/prompt", json={"prompt": txt2img(prefix="adm"), "client_id": client_id},
                                headers=ADMIN)
    assert resp.status == 200, await resp.text()
    prompt_id = (await resp.json())["prompt_id"]
    await frames_until_done(ws, prompt_id)
    await ws.close()
    history = await (await st.client.get(f"/comfy/history/{prompt_id}", headers=ADMIN)).json()
    [image] = history[prompt_id]["outputs"]["9"]["images"]
    resp = await st.client.get("/comfy/view", params=image, headers=ADMIN)
    assert resp.status == 200 and resp.headers["Content-Type"] == "image/png"
    # Its own account's prompt: another user's history does not have it.
    theirs = await (await st.client.get("/comfy/history", headers=bearer(st.alice))).json()
    assert prompt_id not in theirs
    # A token of the admin key's account (for clients that cannot send headers) sees the same prompt.
    token = await (await st.client.post("/api/v1/tokens", json={"name": "comfy"}, headers=ADMIN)).json()
    mine = await (await st.client.get("/comfy/history", params={"token": token["token"]})).json()
    assert prompt_id in mine
