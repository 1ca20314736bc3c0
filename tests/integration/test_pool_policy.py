"""min_size vs demand instances, an applied policy in the live pool, and the simulator agreeing with it."""

import asyncio

import pytest

from libs.events import pool as ev
from libs.events.ids import new_id
from services.pool import api, planner
from services.pool.policies.model import BootModel
from services.pool.policies.simulate import simulate
from services.pool.policies.trace import Job
from services.pool.sim.config import SimConfig
from tests.integration.test_pool_scenarios import FAST_SIM, billing_ids, eventually, pool_events, pool_stack, \
    ready_count, sim_state


def live_phases(svc) -> list[str]:
    return sorted(i.phase for i in svc.view.instances.values() if i.phase in ("renting", "loading", "ready", "claimed"))


async def test_min_size_1_keeps_one_while_a_prewarmed_one_idles_out(nc, js):
    async with pool_stack(nc, js, SimConfig(**FAST_SIM)) as (sim, [svc]):
        await svc.commands.configure(api.ConfigureRequest(changes={"min_size": 1, "idle_timeout_s": 1.0}))
        await eventually(lambda: ready_count(svc) == 1, timeout=30)
        [extra] = (await svc.commands.prewarm(api.PrewarmRequest(count=1)))["instance_ids"]
        await eventually(lambda: svc.view.instances.get(extra) and svc.view.instances[extra].phase == "ready")
        ended = await eventually(lambda: [i for i in svc.view.instances.values() if i.phase == "terminated"],
                                 timeout=30)
        assert [i.terminate_reason for i in ended] == ["idle"]
        passes = svc.reconciler.passes
        await eventually(lambda: svc.reconciler.passes >= passes + 10)  # 2 s, twice the idle timeout
        assert live_phases(svc) == ["ready"], "min_size 1 keeps one however long it idles"
        assert len(billing_ids(await sim_state(sim))) == 1


async def test_desired_size_is_the_old_name_of_min_size(nc, js):
    async with pool_stack(nc, js, SimConfig(**FAST_SIM)) as (sim, [svc]):
        cfg = await svc.commands.configure(api.ConfigureRequest(changes={"desired_size": 2}))
        assert cfg["min_size"] == 2 and cfg["desired_size"] == 2
        cfg = await svc.commands.configure(api.ConfigureRequest(changes={"min_size": 0}))
        assert cfg["min_size"] == 0 and cfg["desired_size"] == 0


async def test_an_applied_policy_decides_with_reasons_as_events(nc, js):
    async with pool_stack(nc, js, SimConfig(**FAST_SIM)) as (sim, [svc]):
        await svc.commands.configure(api.ConfigureRequest(changes={"max_size": 3}))
        with pytest.raises(Exception, match="no parameter"):
            await svc.commands.apply_policy(api.PolicyRequest(policy=ev.PolicySpec(kind="fixed", params={"x": 1})))
        reply = await svc.commands.apply_policy(api.PolicyRequest(
            actor="admin:test", reason="try it", policy=ev.PolicySpec(kind="fixed", params={"n": 2})))
        assert reply["name"] == "fixed(n=2)"
        await eventually(lambda: ready_count(svc) == 2, timeout=30)
        records = await pool_events(js, svc.config.pool_id)
        applied = [r for r in records if isinstance(r.event, ev.PolicyApplied)]
        assert applied[-1].envelope.actor == "admin:test" and applied[-1].event.reason == "try it"
        decided = [r.event for r in records if isinstance(r.event, ev.PolicyDecided)]
        assert decided and decided[-1].keep == 2 and "keep 2 warm" in decided[-1].reason
        status = await svc.commands.status(api.StatusRequest())
        assert status["policy"]["kind"] == "fixed" and status["policy_decisions"][0]["keep"] == 2
        # back to no policy: min_size (0) and the idle timeout rule again
        await svc.commands.configure(api.ConfigureRequest(changes={"idle_timeout_s": 1.0}))
        await svc.commands.apply_policy(api.PolicyRequest(policy=None))
        await eventually(lambda: not live_phases(svc), timeout=30)


TRACE = [(0.0, 1.0), (0.3, 1.0), (9.0, 1.0)]  # two at once, then one after both idled out
IDLE_S = 2.0


async def run_live(svc, t0: float) -> None:
    """Each job claims on arrival; while it cannot, it asks for instances like the generation service."""
    waiting: set[int] = set()
    asking = asyncio.Lock()  # one request for instances at a time, each seeing the last one's rentals

    async def job(n: int, at: float, gpu_s: float) -> None:
        await asyncio.sleep(max(0.0, t0 + at - asyncio.get_running_loop().time()))
        waiting.add(n)
        while True:
            try:
                claim = await svc.commands.claim(api.ClaimRequest(holder=f"job-{n}"))
                break
            except Exception as exc:
                assert getattr(exc, "code", "") == "NO_CAPACITY"
                async with asking:
                    live = [i for i in svc.view.instances.values()
                            if i.phase in ("renting", "loading", "ready", "claimed")]
                    coming = sum(1 for i in live if i.phase != "claimed")
                    want = min(len(waiting) - coming, svc.view.config.max_size - len(live))
                    if want > 0:
                        await svc.commands.prewarm(api.PrewarmRequest(count=want, idempotency_key=new_id()))
                await asyncio.sleep(0.1)
        waiting.discard(n)
        await asyncio.sleep(gpu_s)
        await svc.commands.release(api.ReleaseRequest(instance_id=claim.instance_id, lease_id=claim.lease_id))

    await asyncio.gather(*(job(n, at, s) for n, (at, s) in enumerate(TRACE)))


async def test_the_simulator_and_the_live_pool_rent_and_end_the_same(nc, js):
    async with pool_stack(nc, js, SimConfig(**FAST_SIM)) as (sim, [svc]):
        await svc.commands.apply_policy(api.PolicyRequest(policy=ev.PolicySpec(kind="reactive",
                                                                               params={"idle_s": IDLE_S})))
        t0 = asyncio.get_running_loop().time()
        async with asyncio.timeout(60):
            await run_live(svc, t0)
        records = await pool_events(js, svc.config.pool_id)
        live_rents = [r.envelope.occurred_at.timestamp() for r in records if isinstance(r.event, ev.RentRequested)]
        live_ends = [r.envelope.occurred_at.timestamp() for r in records
                     if isinstance(r.event, ev.TerminateRequested) and r.event.reason == "idle"]
        boots = [(i.ready_at - i.rented_at).total_seconds() for i in svc.view.instances.values() if i.ready_at]
    base = live_rents[0]
    model = BootModel(boot_min_s=min(boots), boot_max_s=max(boots) + 0.01, failure_rate=0.0)
    jobs = [Job(arrival=1_800_000_000 + at, gpu_s=s) for at, s in TRACE]
    r = simulate(jobs, ev.PolicySpec(kind="reactive", params={"idle_s": IDLE_S}), model,
                 settings=planner.Settings(listing_grace_s=0.5, rent_grace_s=4.0))
    sim_rents = [t - 1_800_000_000 for t in r.rents]
    live_rel = [t - base for t in live_rents]
    assert len(sim_rents) == len(live_rel) == 3
    noise = max(boots) + 1.0  # boot-time noise plus reconcile passes
    assert all(abs(a - b) <= noise for a, b in zip(sorted(sim_rents), sorted(live_rel))), (sim_rents, live_rel)
    sim_idle_ends = [t - 1_800_000_000 for t in r.ends]
    live_idle_ends = [t - base for t in live_ends if t - base < TRACE[-1][0]]
    assert len(sim_idle_ends) == len(live_idle_ends) == 2, (sim_idle_ends, live_idle_ends)
    assert all(abs(a - b) <= noise for a, b in zip(sorted(sim_idle_ends), sorted(live_idle_ends)))
