"""The simulator's ComfyUI host resolves file names as ComfyUI does, and serves the agent's removal routes."""

import asyncio
from typing import Any

import aiohttp
import pytest
from yarl import URL

from services.pool.sim import SimServer
from services.pool.sim.png import encode_png
from services.pool.sim.testing import rent_comfy

pytestmark = pytest.mark.timeout(30)
PIXELS = encode_png(2, 2, bytes((10, 20, 30)) * 4)


async def upload(session: aiohttp.ClientSession, url: str, name: str, kind: str = "input", sub: str = "") -> None:
    form = aiohttp.FormData({"type": kind, "subfolder": sub, "overwrite": "true"})
    form.add_field("image", PIXELS, filename=name, content_type="image/png")
    async with session.post(url + "/upload/image", data=form) as resp:
        assert resp.status == 200


async def outcome(session: aiohttp.ClientSession, url: str, name: str) -> tuple[int, str]:
    """Post ``LoadImage(name) -> SaveImage``: (HTTP status, final status or ComfyUI's error type)."""
    prompt = {"1": {"class_type": "LoadImage", "inputs": {"image": name}},
              "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "copy"}}}
    async with session.post(url + "/prompt", json={"prompt": prompt}) as resp:
        body: dict[str, Any] = await resp.json()
        if resp.status != 200:
            return resp.status, body["error"]["type"]
    pid = body["prompt_id"]
    for _ in range(200):
        async with session.get(f"{url}/history/{pid}") as resp:
            entry = (await resp.json()).get(pid)
        if entry:
            return 200, entry["status"]["status_str"]
        await asyncio.sleep(0.05)
    raise AssertionError("the prompt did not finish")


async def test_annotated_and_relative_names_reach_other_folders_like_on_a_real_comfyui(
        sim: SimServer, session: aiohttp.ClientSession) -> None:
    async with asyncio.timeout(25):
        _, url = await rent_comfy(session, sim, models="sd15.safetensors")
        await upload(session, url, "a_00001_.png", kind="output", sub="stoker/j1")
        await upload(session, url, "image.png", sub="stoker/tok")
        # What Stoker's own checks refuse before a prompt gets here: ComfyUI itself loads all of these.
        for name in ("stoker/j1/a_00001_.png [output]", "../output/stoker/j1/a_00001_.png", "stoker/tok/image.png",
                     "stoker/tok/image.png [input]"):
            assert await outcome(session, url, name) == (200, "success"), name
        assert await outcome(session, url, "stoker/j1/a_00001_.png [temp]") == (400, "prompt_outputs_failed_validation")
        async with session.get(url + "/object_info/LoadImage") as resp:
            assert (await resp.json())["LoadImage"]["input"]["required"]["image"][0] == []  # subfolders not listed


async def test_the_agent_file_routes_remove_one_file_or_everything(sim: SimServer,
                                                                   session: aiohttp.ClientSession) -> None:
    async with asyncio.timeout(25):
        _, url = await rent_comfy(session, sim, models="sd15.safetensors")
        await upload(session, url, "image.png", sub="stoker/tok")
        await upload(session, url, "a_00001_.png", kind="output", sub="stoker/j1")
        async with session.delete(url + "/agent/files/input/stoker/tok/image.png") as resp:
            assert resp.status == 200 and await resp.json() == {"removed": ["input/stoker/tok/image.png"]}
        async with session.delete(url + "/agent/files/input/stoker/tok/image.png") as resp:
            assert resp.status == 200 and await resp.json() == {"removed": []}  # idempotent
        async with session.get(url + "/view", params={"filename": "image.png", "subfolder": "stoker/tok",
                                                      "type": "input"}) as resp:
            assert resp.status == 404
        for bad in ("/agent/files/input/stoker/%2E%2E/x.png", "/agent/files/input/stoker%2F..%2Fx.png",
                    "/agent/files/models/a.png", "/agent/files/input/a//b.png"):
            async with session.delete(URL(url + bad, encoded=True)) as resp:
                assert resp.status == 400, bad
        async with session.delete(url + "/agent/files/output/stoker/j1/a_00001_.png") as resp:
            assert await resp.json() == {"removed": ["output/stoker/j1/a_00001_.png"]}
        await upload(session, url, "left.png")
        await upload(session, url, "t.png", kind="temp")
        async with session.delete(url + "/agent/files") as resp:
            assert resp.status == 200 and sorted((await resp.json())["removed"]) == ["input/left.png", "temp/t.png"]
        async with session.get(url + "/view", params={"filename": "left.png", "type": "input"}) as resp:
            assert resp.status == 404
