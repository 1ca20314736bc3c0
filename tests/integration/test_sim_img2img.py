"""The simulator's ComfyUI host runs img2img-shaped workflows (VAEEncode) like ComfyUI."""

import asyncio

from services.pool.sim.testing import rent_comfy


async def test_vae_encode_round_trip(sim, session):
    _, url = await rent_comfy(session, sim, models="m.safetensors")
    async with asyncio.timeout(20):
        while "m.safetensors" not in str(await (await session.get(f"{url}/object_info/CheckpointLoaderSimple")).json()):
            await asyncio.sleep(0.05)
        workflow = {
            "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "m.safetensors"}},
            "2": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 48, "batch_size": 1, "color": 255}},
            "3": {"class_type": "VAEEncode", "inputs": {"pixels": ["2", 0], "vae": ["1", 2]}},
            "4": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["1", 2]}},
            "5": {"class_type": "SaveImage", "inputs": {"images": ["4", 0], "filename_prefix": "i2i"}},
        }
        reply = await session.post(f"{url}/prompt", json={"prompt": workflow, "client_id": "c"})
        assert reply.status == 200, await reply.text()
        prompt_id = (await reply.json())["prompt_id"]
        while not (history := await (await session.get(f"{url}/history/{prompt_id}")).json()):
            await asyncio.sleep(0.05)
    entry = history[prompt_id]
    assert entry["status"]["status_str"] == "success"
    assert entry["outputs"]["5"]["images"][0]["filename"] == "i2i_00001_.png"
    info = await (await session.get(f"{url}/object_info/VAEEncode")).json()
    assert info["VAEEncode"]["input"]["required"]["pixels"] == ["IMAGE", {}]
