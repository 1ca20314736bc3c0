"""Pool hardening (issue 12): one "already gone" confirms a termination; avoided hosts never stall the pool silently."""

import httpx
import pytest

from services.pool import api
from services.pool.providers.vastai import VastAIProvider
from services.pool.sim.config import SimConfig

from tests.integration.test_pool_scenarios import FAST_SIM, eventually, pool_stack

pytestmark = pytest.mark.timeout(90)


class CountingVast(VastAIProvider):
    """The real Vast client, counting DELETEs per instance."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.deletes: dict[str, int] = {}

    async def destroy_instance(self, provider_id: str):
        self.deletes[provider_id] = self.deletes.get(provider_id, 0) + 1
        return await super().destroy_instance(provider_id)


async def test_one_already_gone_answer_confirms_a_termination(nc, js, monkeypatch):
    monkeypatch.setattr("tests.integration.test_pool_scenarios.VastAIProvider", CountingVast)
    # A long listing grace: without the fix, a just-rented instance's DELETE is re-sent every pass for 30 s.
    async with pool_stack(nc, js, SimConfig(**FAST_SIM), listing_grace_s=30.0) as (sim, [svc]):
        [iid] = (await svc.commands.prewarm(api.PrewarmRequest(count=1)))["instance_ids"]
        inst = await eventually(lambda: svc.view.instances.get(iid) and svc.view.instances[iid].provider_id
                                and svc.view.instances[iid])
        await svc.commands.terminate(api.TerminateRequest(instance_id=iid))
        done = await eventually(lambda: svc.view.instances[iid].phase == "terminated" and svc.view.instances[iid],
                                timeout=8)
        assert done.terminate_reason == "admin"
        provider = getattr(svc.reconciler.provider, "rented", svc.reconciler.provider)  # the marketplace beside own boxes
        passes = svc.reconciler.passes
        await eventually(lambda: svc.reconciler.passes >= passes + 3)
        assert provider.deletes[inst.provider_id] <= 2


async def test_when_every_matching_host_is_avoided_the_pool_says_so_and_still_rents(nc, js):
    async with pool_stack(nc, js, SimConfig(**FAST_SIM)) as (sim, [svc]):
        only_4090 = {"offer_filter": {"gpu_names": ["RTX 4090"]}}  # two hosts on the simulated market
        await svc.commands.configure(api.ConfigureRequest(changes=only_4090))
        async with httpx.AsyncClient() as client:
            await client.post(f"{sim.url}/_sim/faults", json={"extraction_failures": 2})
        await svc.commands.configure(api.ConfigureRequest(changes={"desired_size": 1}))
        # Both hosts fail once and are avoided; the pool neither stalls nor hides it.
        await eventually(lambda: "hosts_avoided" in svc.view.problems, timeout=30)
        problem = svc.view.problems["hosts_avoided"]
        assert "avoid" in problem.message and problem.since is not None
        status = await svc.commands.status(api.StatusRequest())
        assert [p["code"] for p in status["problems"]] == ["hosts_avoided"]
        ready = await eventually(lambda: next((i for i in svc.view.instances.values() if i.phase == "ready"), None),
                                 timeout=30)
        assert ready.offer.host_id in {p.host_id for p in svc.view.penalties.values()}
        # A reset forgets the penalties, and with them the problem.
        await svc.commands.reset(api.ResetRequest(reason="hosts are fine now"))
        assert svc.view.penalties == {} and svc.view.problems == {}
