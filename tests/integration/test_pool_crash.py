"""Crash safety: SIGKILL the pool service at random points during rent/terminate/claim traffic."""

import asyncio
import collections
import os
import random
import signal
import subprocess
import sys

import httpx
import msgspec

from libs.events import subjects
from libs.events.ids import new_id
from libs.events import Recorded
from libs.events.replay import replay
from services.pool import api
from services.pool.sim.config import SimConfig
from services.pool.sim.server import start_sim
from services.pool.status import parse_label
from services.pool.view import PoolView, project

FAST_SIM = SimConfig(schedule_delay=0.1, pull_seconds=0.2, extract_seconds=0.1, comfy_boot_delay=0.2,
                     model_download_seconds=0.1, tick_seconds=0.05, listing_lag=0.3, seed=5)
OPERATIONS = 200


def start_pool(nats_url: str, sim_url: str, pool_id: str) -> subprocess.Popen[bytes]:
    env = dict(os.environ, NATS_URL=nats_url, VAST_URL=sim_url, STOKER_PROVIDER="sim", STOKER_POOL_ID=pool_id,
               STOKER_RECONCILE_INTERVAL="0.2", STOKER_LEADER_TTL="1.5", STOKER_LISTING_GRACE="2",
               STOKER_RENT_GRACE="3", STOKER_POOL_DESIRED_SIZE="0", STOKER_LOG_LEVEL="WARNING")
    return subprocess.Popen([sys.executable, "-m", "services.pool"], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


async def request(nc, subject: str, body: dict, pool_id: str) -> dict | None:
    subject = api.for_pool(subject, pool_id)
    try:
        msg = await nc.request(subject, msgspec.json.encode(body), timeout=2.0)
    except Exception:
        return None  # the service is down or restarting: the caller retries like a real client
    return msgspec.json.decode(msg.data)


async def test_sigkill_during_operations_leaves_nothing_unseen(nc, js, nats_url):
    sim = await start_sim(FAST_SIM)
    pool_id = "c" + new_id().replace("-", "")[-12:]
    rng = random.Random(42)
    proc = start_pool(nats_url, sim.url, pool_id)
    kills = 0
    answered = 0
    try:
        async with asyncio.timeout(150):
            while await request(nc, api.STATUS, {}, pool_id) is None:
                await asyncio.sleep(0.2)
            await request(nc, api.CONFIGURE, {"changes": {
                "max_size": 6, "idle_timeout_s": 3600,
                "readiness": {"probe_initial_backoff_s": 0.1, "probe_max_backoff_s": 0.3}}}, pool_id)
            keys: list[str] = []
            for n in range(OPERATIONS):
                op = rng.choice(["prewarm", "prewarm", "claim", "release", "terminate"])
                if op in ("prewarm", "claim") and rng.random() < 0.3:
                    await asyncio.sleep(0.3)  # let rentals progress between bursts
                if op == "prewarm":
                    key = f"k{rng.randint(0, 40)}"  # retried keys must never rent twice
                    keys.append(key)
                    answered += await request(nc, api.PREWARM, {"count": 1, "idempotency_key": key}, pool_id) is not None
                elif op == "claim":
                    answered += await request(nc, api.CLAIM, {"holder": f"job-{n}", "lease_s": 5}, pool_id) is not None
                else:
                    status = await request(nc, api.STATUS, {}, pool_id)
                    live = [i for i in (status or {}).get("result", {}).get("instances", [])
                            if i["state"] in ("ready", "claimed", "loading")]
                    if live:
                        target = rng.choice(live)
                        answered += await request(nc, api.TERMINATE, {"instance_id": target["id"]}, pool_id) is not None
                if rng.random() < 0.06:
                    proc.send_signal(signal.SIGKILL)
                    proc.wait()
                    kills += 1
                    proc = start_pool(nats_url, sim.url, pool_id)
                    while await request(nc, api.STATUS, {}, pool_id) is None:
                        await asyncio.sleep(0.1)
            # Wind down: safe mode, then let the (restarted) service settle.
            while (await request(nc, api.SAFE_MODE, {"enabled": True}, pool_id)) is None:
                await asyncio.sleep(0.2)

            async def settled() -> bool:
                async with httpx.AsyncClient() as client:
                    state = (await client.get(f"{sim.url}/_sim/state")).json()
                return not [i for i in state["instances"] if i["billing"]
                            and (parse_label(i["label"]) or ("",))[0] == pool_id]

            while not await settled():
                await asyncio.sleep(0.3)

        assert kills >= 3, "the test must really kill the service several times"
        assert answered >= OPERATIONS // 2, "most operations must have reached a live service"
        async with httpx.AsyncClient() as client:
            state = (await client.get(f"{sim.url}/_sim/state")).json()
        ours = [i for i in state["instances"] if (parse_label(i["label"]) or ("",))[0] == pool_id]
        # 0 double rentals: one provider instance per rental (label) at most.
        per_label = collections.Counter(i["label"] for i in ours)
        assert ours and max(per_label.values()) == 1, per_label.most_common(3)

        # The service's projection equals a fresh replay of the stream.
        status = (await request(nc, api.STATUS, {}, pool_id))["result"]
        # Fold a fresh replay up to exactly the sequence the service's view was at.
        view = PoolView(pool_id=pool_id)
        async for rec in replay(js, subjects.event_stream(subjects.POOL), subjects.events_filter(subjects.POOL),
                                until=status["seq"]):
            if isinstance(rec, Recorded):
                view = project(view, rec)
        assert view.seq == status["seq"]
        seen = {i["id"]: i["state"] for i in status["instances"]}
        replayed = {i.id: i.phase for i in view.instances.values()}
        assert seen == replayed
        # Every instance the pool ever rented is known to it, and none bills any more.
        known = {i.provider_id for i in view.instances.values() if i.provider_id}
        assert {str(i["id"]) for i in ours} <= known
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        await sim.close()
