"""Benchmark: Stoker's added latency vs submitting the same workflow straight to the same ComfyUI host.

    python -m bench.generation [--jobs 200] [--steps 5]

One simulated ComfyUI host (the built-in simulator), one pool service, one generation service,
all in this process, on NATS_URL or an embedded NATS. Jobs run one at a time, alternating:

- direct: open /ws, POST /prompt, wait for the end of the prompt, GET /history, GET /view;
- Stoker: ``cmd.gen.submit`` with the same workflow, wait for ``GenerationCompleted`` on the
  job's event subject, then read the PNG from the object store.

Each job gets its own seed (ComfyUI would serve a repeated prompt from its cache). The
difference of the two is what Stoker adds: request, checked appends, queue, claim, output
copy to the object store. Goal: <= 50 ms at p50.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import statistics
import time
import uuid
from typing import Any

import aiohttp
import msgspec
import nats

from bench._nats import nats_server
from libs.events import codec, subjects
from libs.events import generation as ev
from services.generation import api
from services.generation.testing import gen_stack
from services.pool.sim.testing import FAST_CONFIG


def pct(values: list[float], q: float) -> float:
    """The q-th percentile (0..100) in milliseconds."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q / 100))] * 1000


def workflow(seed: int, steps: int) -> dict[str, Any]:
    """A small txt2img on the host's checkpoint."""
    return {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sd15.safetensors"}},
        "2": {"class_type": "CLIPTextEncode", "inputs": {"text": "a red fox", "clip": ["1", 1]}},
        "3": {"class_type": "CLIPTextEncode", "inputs": {"text": "blurry", "clip": ["1", 1]}},
        "4": {"class_type": "EmptyLatentImage", "inputs": {"width": 256, "height": 256, "batch_size": 1}},
        "5": {"class_type": "KSampler", "inputs": {"model": ["1", 0], "seed": seed, "steps": steps, "cfg": 7.0,
                                                   "sampler_name": "euler", "scheduler": "normal",
                                                   "positive": ["2", 0], "negative": ["3", 0],
                                                   "latent_image": ["4", 0], "denoise": 1.0}},
        "6": {"class_type": "VAEDecode", "inputs": {"samples": ["5", 0], "vae": ["1", 2]}},
        "7": {"class_type": "SaveImage", "inputs": {"images": ["6", 0], "filename_prefix": "bench"}},
    }


async def direct(session: aiohttp.ClientSession, base: str, prompt: dict[str, Any]) -> float:
    """One job straight to ComfyUI, as a careful client does it; returns seconds."""
    client_id = uuid.uuid4().hex
    t0 = time.perf_counter()
    async with session.ws_connect(f"{base}/ws?clientId={client_id}") as ws:
        async with session.post(f"{base}/prompt", json={"prompt": prompt, "client_id": client_id}) as resp:
            prompt_id = (await resp.json())["prompt_id"]
        async for msg in ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                continue
            data = msgspec.json.decode(msg.data)
            if data["type"] in ("execution_success", "execution_error") and data["data"].get("prompt_id") == prompt_id:
                break
    async with session.get(f"{base}/history/{prompt_id}") as resp:
        entry = (await resp.json())[prompt_id]
    for out in entry["outputs"].values():
        for image in out.get("images", []):
            async with session.get(f"{base}/view", params=image) as resp:
                assert len(await resp.read()) > 0
    return time.perf_counter() - t0


async def main(args: argparse.Namespace) -> None:
    sim_config = msgspec.structs.replace(FAST_CONFIG, step_seconds=args.step_ms / 1000, send_previews=False)
    with nats_server() as url:
        async with gen_stack(url, instances=1, sim_config=sim_config,
                             gen_env={"STOKER_GEN_CONCURRENCY": "1", "STOKER_GEN_POLL": "2"}) as st:
            assert st.gen is not None
            base = next(i.base_url for i in st.pool.view.instances.values() if i.phase == "ready")
            nc = await nats.connect(url)
            js = nc.jetstream()
            store = await js.object_store(subjects.OUTPUT_BUCKET)
            waiting: dict[str, asyncio.Future[ev.GenerationCompleted | ev.GenerationFailed]] = {}

            async def on_event(msg: Any) -> None:
                env = codec.decode(msg.data)
                fut = waiting.get(env.aggregate_id)
                if fut is not None and not fut.done() and isinstance(env.event, ev.GenerationCompleted |
                                                                     ev.GenerationFailed):
                    fut.set_result(env.event)

            await nc.subscribe("ev.gen.job.*", cb=on_event)
            user = "bench" + uuid.uuid4().hex[:8]

            async def stoker(prompt: dict[str, Any]) -> tuple[float, float]:
                t0 = time.perf_counter()
                reply = msgspec.json.decode((await nc.request(api.for_pool(api.SUBMIT, st.pool_id), codec.encode(
                    {"actor": "bench", "user_id": user, "workflow": prompt}), timeout=10)).data)
                job_id = reply["result"]["job_id"]
                fut = waiting.setdefault(job_id, asyncio.get_running_loop().create_future())
                done = await asyncio.wait_for(fut, 30)
                t_event = time.perf_counter() - t0
                assert isinstance(done, ev.GenerationCompleted), done
                data = (await store.get(done.outputs[0].object_name)).data
                assert data[:4] == b"\x89PNG"
                waiting.pop(job_id, None)
                return t_event, time.perf_counter() - t0

            seed = 1
            d_times: list[float] = []
            s_times: list[float] = []
            s_bytes: list[float] = []
            async with aiohttp.ClientSession() as session:
                for n in range(args.warmup + args.jobs):
                    seed += 1
                    dt = await direct(session, base, workflow(seed, args.steps))
                    seed += 1
                    se, sb = await stoker(workflow(seed, args.steps))
                    if n >= args.warmup:
                        d_times.append(dt)
                        s_times.append(se)
                        s_bytes.append(sb)
            await nc.close()
    p50d, p95d = pct(d_times, 50), pct(d_times, 95)
    p50s, p95s = pct(s_times, 50), pct(s_times, 95)
    p50b, p95b = pct(s_bytes, 50), pct(s_bytes, 95)
    print(f"{args.jobs} jobs each way, one at a time, alternating; workflow: txt2img {args.steps} steps at "
          f"{args.step_ms} ms/step on one simulated ComfyUI host")
    print(f"{'':24}{'p50 ms':>10}{'p95 ms':>10}{'mean ms':>10}")
    print(f"{'direct to ComfyUI':24}{p50d:10.1f}{p95d:10.1f}{statistics.mean(d_times) * 1000:10.1f}")
    print(f"{'Stoker (completed)':24}{p50s:10.1f}{p95s:10.1f}{statistics.mean(s_times) * 1000:10.1f}")
    print(f"{'Stoker (+ read bytes)':24}{p50b:10.1f}{p95b:10.1f}{statistics.mean(s_bytes) * 1000:10.1f}")
    print(f"{'added by Stoker':24}{p50s - p50d:10.1f}{p95s - p95d:10.1f}"
          f"{(statistics.mean(s_times) - statistics.mean(d_times)) * 1000:10.1f}   (goal: <= 50 ms at p50)")
    print(f"{'added, with bytes read':24}{p50b - p50d:10.1f}{p95b - p95d:10.1f}"
          f"{(statistics.mean(s_bytes) - statistics.mean(d_times)) * 1000:10.1f}")


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--step-ms", type=float, default=10.0)
    asyncio.run(main(parser.parse_args()))
