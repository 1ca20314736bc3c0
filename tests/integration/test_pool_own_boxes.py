"""Own GPU boxes: a node joins with a join token, is used before anything rented, goes lost when its
heartbeats stop and is used again when they return; a revoked token cannot join."""

import asyncio
import contextlib

import aiohttp
import httpx
import pytest

from libs.events import Metadata
from services.pool import api
from services.pool.instance import PoolError
from services.pool.sim.agent_host import SimAgent
from services.pool.sim.clock import SystemClock
from services.pool.sim.comfy_host import ComfyHost
from services.pool.sim.market import HostSpec
from services.pool.sim.testing import FAST_CONFIG
from services.pool.sim.config import SimConfig
from tests.integration.test_pool_scenarios import FAST_SIM, eventually, pool_stack

pytestmark = pytest.mark.timeout(90)
ADMIN, BOX = Metadata(actor="admin"), Metadata(actor="box")


def node_instances(svc) -> list:
    return [i for i in svc.view.instances.values() if i.provider == "agents"]


async def test_a_joined_box_is_used_first_lost_and_back(nc, js) -> None:
    async with pool_stack(nc, js, SimConfig(**FAST_SIM), env={"STOKER_NODE_LOST_AFTER": "1.5"}) as (sim, [svc]), \
            aiohttp.ClientSession() as session:
        spec = HostSpec(instance_id=1, generation=0, ready_at=0.0, models=(("checkpoints", "own.safetensors", 0.0),))
        host = ComfyHost(spec, lambda: FAST_CONFIG, SystemClock(), should_die=lambda: False, on_die=lambda: None,
                         log=lambda line: None)
        await host.start()
        box = SimAgent(spec, host, SystemClock(), session, lambda n: [], 0.05)
        port = await box.start()
        url = f"http://127.0.0.1:{port}"
        made = await svc.joining.create("studio boxes", 0.0, ADMIN)
        joined = await svc.joining.join(made["token"], url, "box-1", "RTX 3090", BOX)
        box.agent.secret = joined["secret"]  # the secret the pool gave the box when it joined
        beating = asyncio.Event()
        beating.set()

        async def heartbeats() -> None:
            while True:
                if beating.is_set():
                    await svc.joining.heartbeat(made["token"], joined["node_id"])
                await asyncio.sleep(0.3)
        beat_task = asyncio.create_task(heartbeats())
        try:
            # Only the box can match (price cap 0): nothing is rented from the marketplace.
            # The box brings its own checkpoint: the pool requires (and downloads) nothing here.
            await svc.commands.configure(api.ConfigureRequest(changes={
                "desired_size": 1, "offer_filter": {"max_dph": 0.0}, "template": {"models": []},
                "readiness": {"required_models": []}}))
            inst = await eventually(lambda: next((i for i in node_instances(svc) if i.phase == "ready"), None), 30)
            assert inst.provider_id == joined["node_id"] and inst.base_url == url and inst.dph == 0.0
            assert "own.safetensors" in inst.models and not sim.market.instances  # nothing rented
            claim = await svc.commands.claim(api.ClaimRequest(holder="job-1"))
            assert claim.base_url == url
            access = await svc.commands.host_access(api.HostAccessRequest(base_url=url))
            async with httpx.AsyncClient() as client:
                assert (await client.get(url + "/system_stats")).status_code == 401
                ok = await client.get(url + "/system_stats", headers={"Authorization": f"Bearer {access.secret}"})
                assert ok.status_code == 200  # the job's calls reach the box's ComfyUI
            await svc.commands.release(api.ReleaseRequest(instance_id=claim.instance_id, lease_id=claim.lease_id))

            beating.clear()  # the box goes quiet
            lost = await eventually(lambda: svc.view.instances[inst.id].phase == "terminated"
                                    and svc.view.instances[inst.id], 30)
            assert lost.terminate_reason == "provider_lost"
            beating.set()  # and comes back
            again = await eventually(lambda: next((i for i in node_instances(svc)
                                                   if i.phase == "ready" and i.id != inst.id), None), 30)
            assert again.provider_id == joined["node_id"]

            await svc.joining.revoke(made["token_id"], ADMIN)
            with pytest.raises(PoolError) as refused:
                await svc.joining.join(made["token"], url, "box-2", "", BOX)
            assert refused.value.code == "UNAUTHORIZED"
        finally:
            beat_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, PoolError):
                await beat_task
            await box.close()
            await host.close()
