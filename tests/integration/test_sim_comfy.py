"""The per-instance ComfyUI host, driven with aiohttp like a real client."""

import asyncio
import io
import json
import struct
import uuid
from typing import Any

import aiohttp
import pytest
from PIL import Image

from services.pool.sim import SimServer
from services.pool.sim.config import merge_config
from services.pool.sim.png import encode_png, read_text_chunks
from services.pool.sim.testing import TEST_INSTANCE_SECRET, eventually, rent_comfy, vast_json

SMOKE = {"1": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 48, "batch_size": 1, "color": 16711680}},
         "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "probe"}}}


def txt2img(steps: int = 8, batch: int = 1, seed: int = 5, save: str = "SaveImage") -> dict[str, Any]:
    out_inputs: dict[str, Any] = {"images": ["6", 0], "filename_prefix": "gen/out"}
    if save == "SaveAnimatedPNG":
        out_inputs.update(fps=8.0, compress_level=4)
    return {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sd15.safetensors"}},
        "2": {"class_type": "CLIPTextEncode", "inputs": {"text": "a red fox", "clip": ["1", 1]}},
        "3": {"class_type": "CLIPTextEncode", "inputs": {"text": "blurry", "clip": ["1", 1]}},
        "4": {"class_type": "EmptyLatentImage", "inputs": {"width": 128, "height": 96, "batch_size": batch}},
        "5": {"class_type": "KSampler", "inputs": {"model": ["1", 0], "seed": seed, "steps": steps, "cfg": 7.0,
                                                   "sampler_name": "euler", "scheduler": "normal",
                                                   "positive": ["2", 0], "negative": ["3", 0],
                                                   "latent_image": ["4", 0], "denoise": 1.0}},
        "6": {"class_type": "VAEDecode", "inputs": {"samples": ["5", 0], "vae": ["1", 2]}},
        "7": {"class_type": save, "inputs": out_inputs},
    }




@pytest.fixture
async def comfy(sim: SimServer, session: aiohttp.ClientSession) -> str:
    _, url = await rent_comfy(session, sim, models="sd15.safetensors,loras/detail.safetensors")
    return url


class Run:
    """Messages seen on the websocket for one prompt."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.binary: list[bytes] = []
        self.prompt_id = ""

    def types(self) -> list[str]:
        return [e["type"] for e in self.events]

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [e["data"] for e in self.events if e["type"] == kind]


async def run_prompt(session: aiohttp.ClientSession, url: str, prompt: dict[str, Any],
                     on_first_progress: Any = None, **extra: Any) -> Run:
    client_id = uuid.uuid4().hex
    run = Run()
    async with session.ws_connect(f"{url}/ws?clientId={client_id}") as ws:
        hello = await ws.receive_json()
        assert hello["type"] == "status" and hello["data"]["sid"] == client_id
        async with session.post(url + "/prompt", json={"prompt": prompt, "client_id": client_id, **extra}) as resp:
            body = await resp.json()
            assert resp.status == 200, body
            assert body["node_errors"] == {}
            run.prompt_id = body["prompt_id"]
        async for msg in ws:
            if msg.type == aiohttp.WSMsgType.BINARY:
                run.binary.append(msg.data)
                continue
            event = json.loads(msg.data)
            run.events.append(event)
            if event["type"] == "progress" and on_first_progress is not None:
                await on_first_progress(run.prompt_id)
                on_first_progress = None
            if event["type"] == "executing" and event["data"]["node"] is None:
                break
    return run


async def view(session: aiohttp.ClientSession, url: str, image: dict[str, str]) -> bytes:
    async with session.get(url + "/view", params=image) as resp:
        assert resp.status == 200 and resp.content_type == "image/png"
        assert resp.headers["Content-Disposition"] == f'filename="{image["filename"]}"'
        return await resp.read()


async def test_boot_gate_then_stats(sim: SimServer, session: aiohttp.ClientSession) -> None:
    async with asyncio.timeout(20):
        sim.market.config = merge_config(sim.market.config, {"comfy_boot_delay": 0.6})
        _, found = await vast_json(session, sim, "POST", "/api/v0/bundles/", {"rentable": {"eq": True}})
        _, made = await vast_json(session, sim, "PUT", f"/api/v0/asks/{found['offers'][0]['id']}/",
                                  {"image": "comfy", "env": {"-p 8188:8188": "1",
                                                             "STOKER_INSTANCE_SECRET": TEST_INSTANCE_SECRET},
                                   "disk": 10})
        iid = made["new_contract"]

        async def port() -> str | None:
            _, shown = await vast_json(session, sim, "GET", f"/api/v0/instances/{iid}/")
            ports = (shown["instances"] or {}).get("ports") or {}
            return ports["8188/tcp"][0]["HostPort"] if "8188/tcp" in ports else None
        url = f"http://127.0.0.1:{await eventually(port)}"
        async with session.get(url + "/system_stats") as resp:
            assert resp.status == 502

        async def stats() -> dict[str, Any] | None:
            async with session.get(url + "/api/system_stats") as resp:
                return await resp.json() if resp.status == 200 else None
        body = await eventually(stats)
        assert body["system"]["comfyui_version"] and body["devices"][0]["type"] == "cuda"


async def test_nothing_on_a_host_answers_without_its_secret(sim: SimServer, session: aiohttp.ClientSession) -> None:
    async with asyncio.timeout(20):
        iid, url = await rent_comfy(session, sim, models="sd15.safetensors")
        _, found = await vast_json(session, sim, "POST", "/api/v0/bundles/", {"rentable": {"eq": True}})
        _, made = await vast_json(session, sim, "PUT", f"/api/v0/asks/{found['offers'][0]['id']}/",
                                  {"image": "comfy", "env": {"-p 8188:8188": "1"}, "disk": 10})
        bare_iid = made["new_contract"]

        async def port() -> str | None:
            _, shown = await vast_json(session, sim, "GET", f"/api/v0/instances/{bare_iid}/")
            ports = (shown["instances"] or {}).get("ports") or {}
            return ports["8188/tcp"][0]["HostPort"] if "8188/tcp" in ports else None
        no_secret_url = f"http://127.0.0.1:{await eventually(port)}"
        async with aiohttp.ClientSession() as plain:
            for target, headers in [(url, {}), (url, {"Authorization": "Bearer wrong"}),
                                    (no_secret_url, {}), (no_secret_url, {"Authorization": "Bearer "})]:
                for method, path in [("GET", "/system_stats"), ("POST", "/prompt"), ("GET", "/agent/status"),
                                     ("GET", "/view?filename=x.png"), ("GET", "/agent/logs")]:
                    async with plain.request(method, target + path, headers=headers) as resp:
                        assert resp.status == 401, (target, method, path)
                with pytest.raises(aiohttp.WSServerHandshakeError):
                    await plain.ws_connect(target + "/ws?clientId=x", headers=headers)
        async with session.get(url + "/agent/status") as resp:
            status = await resp.json()
        assert status["phase"] == "ready" and status["models"]["checkpoints"] == ["sd15.safetensors"]
        assert [f["state"] for f in status["files"]] == ["done"] and status["comfyui_version"] == "0.3.64"


async def test_empty_image_save_over_ws_history_and_view(session: aiohttp.ClientSession, comfy: str) -> None:
    async with asyncio.timeout(20):
        run = await run_prompt(session, comfy, SMOKE)
        types = [t for t in run.types() if t not in ("status", "progress_state")]
        assert types == ["execution_start", "execution_cached", "executing", "executing", "executed",
                         "execution_success", "executing"]
        assert run.types()[-2:] == ["status", "executing"] and run.of("status")[-1]["status"]["exec_info"] == {
            "queue_remaining": 0}
        executed = run.of("executed")[0]
        image = {"filename": "probe_00001_.png", "subfolder": "", "type": "output"}
        assert executed == {"node": "2", "display_node": "2", "output": {"images": [image]}, "prompt_id": run.prompt_id}
        assert all(d["prompt_id"] == run.prompt_id for d in run.of("progress_state"))
        async with session.get(f"{comfy}/history/{run.prompt_id}") as resp:
            entry = (await resp.json())[run.prompt_id]
        assert entry["outputs"] == {"2": {"images": [image]}}
        assert entry["status"]["status_str"] == "success" and entry["status"]["completed"] is True
        assert [m[0] for m in entry["status"]["messages"]] == ["execution_start", "execution_cached", "execution_success"]
        assert entry["prompt"][1] == run.prompt_id and entry["prompt"][4] == ["2"] and len(entry["prompt"]) == 5
        assert entry["meta"]["2"] == {"node_id": "2", "display_node": "2", "parent_node": None, "real_node_id": "2"}
        data = await view(session, comfy, image)
        img = Image.open(io.BytesIO(data))
        assert img.size == (64, 48) and img.convert("RGB").getpixel((10, 10)) == (255, 0, 0)
        assert json.loads(read_text_chunks(data)["prompt"])["1"]["class_type"] == "EmptyImage"
        # same prompt again: fully cached, replays the old file name
        again = await run_prompt(session, comfy, SMOKE)
        assert again.of("execution_cached")[0]["nodes"] == ["1", "2"]
        assert "executing" not in again.types()[:-1]
        assert again.of("executed")[0]["output"] == {"images": [image]}
        async with session.get(comfy + "/api/history", params={"max_items": "1"}) as resp:
            assert list(await resp.json()) == [again.prompt_id]


async def test_validation_errors_are_400_with_comfy_shapes(session: aiohttp.ClientSession, comfy: str) -> None:
    async with asyncio.timeout(20):
        bad = txt2img()
        bad["1"]["inputs"]["ckpt_name"] = "does_not_exist.safetensors"
        async with session.post(comfy + "/prompt", json={"prompt": bad}) as resp:
            assert resp.status == 400
            body = await resp.json()
        assert body["error"]["type"] == "prompt_outputs_failed_validation"
        err = body["node_errors"]["1"]["errors"][0]
        assert err["type"] == "value_not_in_list" and err["extra_info"]["received_value"] == "does_not_exist.safetensors"
        assert body["node_errors"]["1"]["dependent_outputs"] == ["7"]
        async with session.post(comfy + "/api/prompt", json={"client_id": "x"}) as resp:
            assert resp.status == 400 and (await resp.json())["error"]["type"] == "no_prompt"
        async with session.post(comfy + "/prompt", data=b"{not json") as resp:
            assert resp.status == 500
        async with session.get(comfy + "/object_info/CheckpointLoaderSimple") as resp:
            info = await resp.json()
        assert info["CheckpointLoaderSimple"]["input"]["required"]["ckpt_name"][0] == ["sd15.safetensors"]
        async with session.get(comfy + "/models/loras") as resp:
            assert await resp.json() == ["detail.safetensors"]
        async with session.get(comfy + "/object_info/NoSuch") as resp:
            assert await resp.json() == {}


async def test_sampler_progress_previews_and_runtime_error(session: aiohttp.ClientSession, comfy: str) -> None:
    async with asyncio.timeout(20):
        run = await run_prompt(session, comfy, txt2img(steps=6))
        progress = run.of("progress")
        assert [(p["value"], p["max"], p["node"]) for p in progress] == [(i, 6, "5") for i in range(1, 7)]
        executing = [d["node"] for d in run.of("executing")]
        assert executing == ["1", "2", "3", "4", "5", "6", "7", None]
        i_first, i_last = run.types().index("progress"), len(run.types()) - 1 - run.types()[::-1].index("progress")
        assert run.types().index("executed") > i_last > i_first > run.types().index("execution_start")
        assert len(run.binary) == 6
        assert all(struct.unpack(">II", b[:8]) == (1, 2) and b[8:12] == b"\x89PNG" for b in run.binary)
        image = run.of("executed")[0]["output"]["images"][0]
        assert image == {"filename": "out_00001_.png", "subfolder": "gen", "type": "output"}
        img = Image.open(io.BytesIO(await view(session, comfy, image)))
        assert img.size == (128, 96)
        other = await run_prompt(session, comfy, txt2img(steps=6, seed=6))
        assert other.of("execution_cached")[0]["nodes"] == ["1", "2", "3", "4"]
        image2 = other.of("executed")[0]["output"]["images"][0]
        assert image2["filename"] == "out_00002_.png"
        assert Image.open(io.BytesIO(await view(session, comfy, image2))).tobytes() != img.tobytes()

        escape = {**SMOKE, "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "../../escape"}}}
        failed = await run_prompt(session, comfy, escape)
        error = failed.of("execution_error")[0]
        assert error["node_id"] == "2" and error["node_type"] == "SaveImage" and error["executed"] == ["1"]
        assert error["exception_message"].startswith("**** ERROR: Saving image outside the output folder is not allowed.")
        assert failed.types()[-2:] == ["status", "executing"]
        async with session.get(f"{comfy}/history/{failed.prompt_id}") as resp:
            status = (await resp.json())[failed.prompt_id]["status"]
        assert status["status_str"] == "error" and status["completed"] is False
        assert status["messages"][-1][0] == "execution_error"


async def test_interrupt_and_queue(session: aiohttp.ClientSession, comfy: str) -> None:
    async with asyncio.timeout(20):
        async def interrupt(prompt_id: str) -> None:
            async with session.get(comfy + "/queue") as resp:
                queue = await resp.json()
            assert queue["queue_running"][0][1] == prompt_id and len(queue["queue_running"][0]) == 5
            async with session.post(comfy + "/interrupt", json={"prompt_id": "someone-else"}) as resp:
                assert resp.status == 200
            async with session.post(comfy + "/interrupt", json={}) as resp:
                assert resp.status == 200 and await resp.read() == b""
        run = await run_prompt(session, comfy, txt2img(steps=300), on_first_progress=interrupt,
                               prompt_id="my-own-id")
        assert run.prompt_id == "my-own-id"
        stopped = run.of("execution_interrupted")[0]
        assert stopped["node_id"] == "5" and stopped["node_type"] == "KSampler" and sorted(stopped["executed"]) == ["1", "2", "3", "4"]
        assert len(run.of("progress")) < 50 and "execution_success" not in run.types()
        async with session.get(comfy + "/history/my-own-id") as resp:
            entry = (await resp.json())["my-own-id"]
        assert entry["status"]["messages"][-1][0] == "execution_interrupted" and entry["outputs"] == {}


async def test_animated_png_and_upload_round_trip(session: aiohttp.ClientSession, comfy: str) -> None:
    async with asyncio.timeout(20):
        run = await run_prompt(session, comfy, txt2img(steps=2, batch=4, save="SaveAnimatedPNG"))
        out = run.of("executed")[0]["output"]
        assert out["animated"] == [True]
        anim = Image.open(io.BytesIO(await view(session, comfy, out["images"][0])))
        assert getattr(anim, "n_frames", 1) == 4 and anim.size == (128, 96)

        form = aiohttp.FormData()
        form.add_field("image", encode_png(4, 4, bytes((10, 20, 30)) * 16), filename="up.png", content_type="image/png")
        async with session.post(comfy + "/upload/image", data=form) as resp:
            assert await resp.json() == {"name": "up.png", "subfolder": "", "type": "input"}
        prompt = {"1": {"class_type": "LoadImage", "inputs": {"image": "up.png"}},
                  "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
                  "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "sub/inv"}},
                  "4": {"class_type": "StringConcatenate", "inputs": {"string_a": "foo", "string_b": "bar", "delimiter": "-"}},
                  "5": {"class_type": "PreviewAny", "inputs": {"source": ["4", 0]}}}
        run = await run_prompt(session, comfy, prompt)
        outputs = {d["node"]: d["output"] for d in run.of("executed")}
        assert outputs["5"] == {"text": ["foo-bar"]}
        image = outputs["3"]["images"][0]
        assert image == {"filename": "inv_00001_.png", "subfolder": "sub", "type": "output"}
        pic = Image.open(io.BytesIO(await view(session, comfy, image))).convert("RGB")
        assert pic.getpixel((1, 1)) == (245, 235, 225)
        async with session.get(comfy + "/view", params={"filename": "x.png", "subfolder": "../..", "type": "output"}) as resp:
            assert resp.status == 403
        async with session.get(comfy + "/view", params={"filename": "nope.png"}) as resp:
            assert resp.status == 404


async def test_host_dies_mid_job(sim: SimServer, session: aiohttp.ClientSession) -> None:
    async with asyncio.timeout(20):
        iid, url = await rent_comfy(session, sim, models="sd15.safetensors")
        async with session.post(f"{sim.url}/_sim/instances/{iid}/die_mid_job") as resp:
            assert resp.status == 200
        client_id = uuid.uuid4().hex
        seen: list[str] = []
        async with session.ws_connect(f"{url}/ws?clientId={client_id}") as ws:
            await ws.receive_json()
            async with session.post(url + "/prompt", json={"prompt": txt2img(steps=10), "client_id": client_id}) as resp:
                assert resp.status == 200
            async for msg in ws:
                if msg.type == aiohttp.WSMsgType.TEXT:
                    seen.append(json.loads(msg.data)["type"])
        assert "progress" in seen and "execution_success" not in seen and "execution_error" not in seen
        _, shown = await vast_json(session, sim, "GET", f"/api/v0/instances/{iid}/")
        assert shown["instances"] is None
        assert iid not in sim.market.billing_ids()
        with pytest.raises(aiohttp.ClientConnectionError):
            async with session.get(url + "/system_stats") as resp:
                await resp.read()
