"""Pool hardening (issue 12): one "already gone" confirms a termination; avoided hosts never stall the pool silently."""

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
        provider = svc.reconciler.provider
        passes = svc.reconciler.passes
        await eventually(lambda: svc.reconciler.passes >= passes + 3)
        assert provider.deletes[inst.provider_id] <= 2
