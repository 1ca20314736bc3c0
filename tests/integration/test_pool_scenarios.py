"""Pool scenarios against the built-in simulator on fast timings, with real NATS JetStream."""

import asyncio
import contextlib
from datetime import datetime, timedelta, timezone

import httpx
import pytest

from libs.events import Recorded
from libs.events import pool as ev
from libs.events import subjects
from libs.events.ids import new_id
from libs.events.replay import replay
from services.pool import api
from services.pool.app import PoolService, ServiceConfig
from services.pool.handlers import summary
from services.pool.providers.vastai import VastAIProvider
from services.pool.sim.config import SimConfig
from services.pool.sim.server import start_sim

FAST_SIM = dict(schedule_delay=0.1, pull_seconds=0.3, extract_seconds=0.2, comfy_boot_delay=0.3,
                model_download_seconds=0.1, tick_seconds=0.05)
FAST_READINESS = {"readiness": {"probe_initial_backoff_s": 0.1, "probe_max_backoff_s": 0.5, "probe_timeout_s": 30}}


async def eventually(predicate, timeout: float = 20.0, every: float = 0.1):
    async with asyncio.timeout(timeout):
        while True:
            value = predicate()
            if asyncio.iscoroutine(value):
                value = await value
            if value:
                return value
            await asyncio.sleep(every)


@contextlib.asynccontextmanager
async def pool_stack(nc, js, sim_config: SimConfig, *, replicas: int = 1, env=None, **service_overrides):
    sim = await start_sim(sim_config)
    provider = VastAIProvider("sim-key", sim.url, retries=8)
    pool_id = "t" + new_id().replace("-", "")[-12:]
    settings = dict(pool_id=pool_id, reconcile_interval_s=0.2, leader_ttl_s=1.5, listing_grace_s=3.0,
                    rent_grace_s=4.0)
    settings.update(service_overrides)
    services = [PoolService(nc, js, provider, config=ServiceConfig(replica=f"r{n}", **settings), env=env)
                for n in range(replicas)]
    try:
        for s in services:
            await s.start()
        await services[0].commands.configure(api.ConfigureRequest(changes=FAST_READINESS))
        yield sim, services
    finally:
        for s in services:
            await s.stop()
        await provider.aclose()
        await sim.close()


async def sim_state(sim) -> dict:
    async with httpx.AsyncClient() as client:
        return (await client.get(f"{sim.url}/_sim/state")).json()


def billing_ids(state: dict) -> set[str]:
    return {str(i["id"]) for i in state["instances"] if i.get("billing")}


async def pool_events(js, pool_id: str) -> list:
    out = []
    async for rec in replay(js, subjects.event_stream(subjects.POOL), subjects.events_filter(subjects.POOL)):
        if isinstance(rec, Recorded) and getattr(rec.event, "pool_id", None) == pool_id:
            out.append(rec)
    return out


def ready_count(service) -> int:
    return sum(1 for i in service.view.instances.values() if i.phase == "ready")


async def test_converges_despite_extraction_failures_lag_and_429s(nc, js):
    cfg = SimConfig(**FAST_SIM, extraction_failure_rate=0.2, listing_lag=0.5, rate_limit_burst_rate=0.05,
                    rate_limit_burst_length=2, rate_limit_retry_after=0.1, seed=11)
    async with pool_stack(nc, js, cfg) as (sim, [svc]):
        async with httpx.AsyncClient() as client:
            await client.post(f"{sim.url}/_sim/faults", json={"extraction_failures": 2})
        await svc.commands.configure(api.ConfigureRequest(changes={"desired_size": 3}))
        await eventually(lambda: ready_count(svc) == 3, timeout=45)
        pool_id = svc.config.pool_id
        records = await pool_events(js, pool_id)
        failed = [r for r in records if isinstance(r.event, ev.ExtractionFailed)]
        assert len(failed) >= 2, "the forced extraction failures happened"
        for f in failed:
            # Terminated within one reconcile: the terminate request is part of the same append.
            same = [r for r in records if r.envelope.aggregate_id == f.envelope.aggregate_id]
            after = same[same.index(f) + 1]
            assert isinstance(after.event, ev.TerminateRequested) and after.event.reason == "extraction_failed"
            assert "no space left on device" in f.event.status_msg
            # ... and its host is avoided afterwards.
            later_rents = [r for r in records if isinstance(r.event, ev.RentRequested) and r.seq > f.seq]
            assert all(r.event.offer.host_id != f.event.host_id for r in later_rents)
        # Every failed rental ends up confirmed terminated, and nothing unknown bills at the simulator.
        await eventually(lambda: all(i.phase in ("ready", "terminated", "failed")
                                     for i in svc.view.instances.values()), timeout=20)
        known = {i.provider_id for i in svc.view.instances.values() if i.phase == "ready"}
        assert billing_ids(await sim_state(sim)) == known


async def test_idle_instances_end_after_the_idle_timeout(nc, js):
    async with pool_stack(nc, js, SimConfig(**FAST_SIM)) as (sim, [svc]):
        await svc.commands.configure(api.ConfigureRequest(changes={"desired_size": 0, "idle_timeout_s": 1.0}))
        [iid] = (await svc.commands.prewarm(api.PrewarmRequest(count=1)))["instance_ids"]
        await eventually(lambda: svc.view.instances.get(iid) and svc.view.instances[iid].phase == "ready")
        inst = await eventually(lambda: svc.view.instances[iid].phase == "terminated" and svc.view.instances[iid])
        assert inst.terminate_reason == "idle"
        assert billing_ids(await sim_state(sim)) == set()


async def test_safe_mode_ends_everything_within_one_reconcile(nc, js):
    async with pool_stack(nc, js, SimConfig(**FAST_SIM)) as (sim, [svc]):
        await svc.commands.configure(api.ConfigureRequest(changes={"desired_size": 2}))
        await eventually(lambda: ready_count(svc) == 2, timeout=30)
        await svc.commands.safe_mode(api.SafeModeRequest(enabled=True))
        passes = svc.reconciler.passes
        await eventually(lambda: svc.reconciler.passes >= passes + 2)
        assert all(i.phase in ("terminating", "terminated") for i in svc.view.instances.values())
        assert {i.terminate_reason for i in svc.view.instances.values()} == {"safe_mode"}
        await eventually(lambda: all(i.phase == "terminated" for i in svc.view.instances.values()))
        assert billing_ids(await sim_state(sim)) == set()
        with pytest.raises(Exception, match="safe mode"):
            await svc.commands.prewarm(api.PrewarmRequest(count=1))


async def test_claims_are_exclusive_and_an_expired_lease_frees_the_instance(nc, js):
    async with pool_stack(nc, js, SimConfig(**FAST_SIM)) as (sim, [svc]):
        await svc.commands.configure(api.ConfigureRequest(changes={"desired_size": 2}))
        await eventually(lambda: ready_count(svc) == 2, timeout=30)
        claims = await asyncio.gather(*(svc.commands.claim(api.ClaimRequest(holder=f"job-{n}", lease_s=1.0))
                                        for n in range(4)), return_exceptions=True)
        granted = [c for c in claims if isinstance(c, api.Claim)]
        refused = [c for c in claims if not isinstance(c, api.Claim)]
        assert len(granted) == 2 and len({c.instance_id for c in granted}) == 2
        assert all(getattr(e, "code", "") == "NO_CAPACITY" for e in refused)
        held = granted[0]
        await svc.commands.release(api.ReleaseRequest(instance_id=held.instance_id, lease_id=held.lease_id))
        assert svc.view.instances[held.instance_id].phase == "ready"
        other = granted[1]
        inst = await eventually(lambda: svc.view.instances[other.instance_id].phase == "ready"
                                and svc.view.instances[other.instance_id], timeout=10)
        assert inst.lease is None
        records = await pool_events(js, svc.config.pool_id)
        assert any(isinstance(r.event, ev.Released) and r.event.reason == "lease_expired" for r in records)


async def test_spend_cap_trips_safe_mode(nc, js):
    async with pool_stack(nc, js, SimConfig(**FAST_SIM)) as (sim, [svc]):
        await svc.commands.configure(api.ConfigureRequest(changes={
            "desired_size": 1, "spend_caps": {"max_per_day": 0.0005}}))
        await eventually(lambda: svc.view.safe_mode, timeout=30)
        assert svc.view.safe_mode_reason == "budget_day"
        await eventually(lambda: all(i.phase in ("terminated", "failed") for i in svc.view.instances.values()))
        assert billing_ids(await sim_state(sim)) == set()
        records = await pool_events(js, svc.config.pool_id)
        trip = [r for r in records if isinstance(r.event, ev.SafeModeChanged)]
        assert trip and "cap" in trip[0].event.detail


async def test_orphans_and_zombie_terminates_are_cleaned_up(nc, js):
    async with pool_stack(nc, js, SimConfig(**FAST_SIM)) as (sim, [svc]):
        provider = VastAIProvider("k", sim.url)
        offers = await provider.search_offers(svc.view.config.offer_filter)
        stray = await provider.create_instance(offers[-1], svc.view.config.template,
                                               label=f"stoker:{svc.config.pool_id}:forgotten", env={})
        await provider.aclose()
        inst = await eventually(lambda: svc.view.instances.get(f"orphan-{stray}"))
        assert inst.terminate_reason == "orphan"
        await eventually(lambda: svc.view.instances[f"orphan-{stray}"].phase == "terminated")

        async with httpx.AsyncClient() as client:
            await client.post(f"{sim.url}/_sim/faults", json={"zombie_terminates": 1})
        [iid] = (await svc.commands.prewarm(api.PrewarmRequest(count=1)))["instance_ids"]
        await eventually(lambda: svc.view.instances.get(iid) and svc.view.instances[iid].phase == "ready")
        await svc.commands.terminate(api.TerminateRequest(instance_id=iid))
        await eventually(lambda: svc.view.instances[iid].phase == "terminated", timeout=20)
        assert billing_ids(await sim_state(sim)) == set()


async def test_prewarm_with_the_same_key_rents_once(nc, js):
    async with pool_stack(nc, js, SimConfig(**FAST_SIM)) as (sim, [svc]):
        first = await svc.commands.prewarm(api.PrewarmRequest(count=1, idempotency_key="k1"))
        again = await svc.commands.prewarm(api.PrewarmRequest(count=1, idempotency_key="k1"))
        assert first == again
        await eventually(lambda: ready_count(svc) == 1)
        assert len([s for s in (await sim_state(sim))["instances"] if s.get("billing")]) == 1


async def test_only_one_replica_reconciles_and_another_takes_over(nc, js):
    async with pool_stack(nc, js, SimConfig(**FAST_SIM), replicas=2) as (sim, services):
        await eventually(lambda: sum(s.lease.is_leader for s in services) == 1)
        await asyncio.sleep(1.0)
        leaders = [s for s in services if s.lease.is_leader]
        followers = [s for s in services if not s.lease.is_leader]
        assert len(leaders) == 1 and followers[0].reconciler.passes == 0
        # The leader dies without giving its lease back.
        for task in leaders[0]._tasks:
            task.cancel()
        await eventually(lambda: followers[0].lease.is_leader, timeout=10)
        passes = followers[0].reconciler.passes
        await eventually(lambda: followers[0].reconciler.passes > passes)


async def test_status_summary_has_costs(nc, js):
    async with pool_stack(nc, js, SimConfig(**FAST_SIM)) as (sim, [svc]):
        await svc.commands.configure(api.ConfigureRequest(changes={"desired_size": 1}))
        await eventually(lambda: ready_count(svc) == 1, timeout=30)
        await asyncio.sleep(0.5)
        status = summary(svc.view, svc.clock())
        [inst] = [i for i in status["instances"] if i["state"] == "ready"]
        assert inst["gpu"] and inst["dph"] > 0 and inst["accrued_cost"] > 0
        assert status["spend_rate_dph"] == pytest.approx(inst["dph"])
        assert set(inst["cost_by_state"]) >= {"loading", "idle"}


async def test_ready_waits_for_required_models_and_the_warm_up(nc, js):
    warmup = {"1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}},
              "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "warmup"}}}
    async with pool_stack(nc, js, SimConfig(**FAST_SIM)) as (sim, [svc]):
        await svc.commands.configure(api.ConfigureRequest(changes={
            "template": {"models": ["https://huggingface.co/x/resolve/main/sdxl_base.safetensors"]},
            "readiness": {"required_models": ["sdxl_base.safetensors"], "warmup_workflow": warmup}}))
        [iid] = (await svc.commands.prewarm(api.PrewarmRequest(count=1)))["instance_ids"]
        inst = await eventually(lambda: svc.view.instances.get(iid) and svc.view.instances[iid].phase == "ready"
                                and svc.view.instances[iid], timeout=30)
        assert "sdxl_base.safetensors" in inst.models
        async with httpx.AsyncClient() as client:
            auth = {"Authorization": f"Bearer {svc.reconciler.secret_for(iid)}"}
            assert (await client.get(f"{inst.base_url}/history")).status_code == 401  # no secret, no answer
            history = (await client.get(f"{inst.base_url}/history", headers=auth)).json()
        assert any(entry["status"]["status_str"] == "success" for entry in history.values()), \
            "the warm-up workflow ran on the instance before it was Ready"
        claim = await svc.commands.claim(api.ClaimRequest(holder="job", checkpoint="sdxl_base.safetensors"))
        assert claim.instance_id == iid and "sdxl_base.safetensors" in claim.models


async def test_provider_key_can_be_replaced_at_runtime_without_trace(nc, js, caplog):
    import msgspec

    secret = "vast-" + new_id()
    async with pool_stack(nc, js, SimConfig(**FAST_SIM)) as (sim, [svc]):
        async with httpx.AsyncClient() as client:  # from now on the marketplace wants the new key
            await client.put(f"{sim.url}/_sim/config", json={"api_key": secret})
        subject = api.for_pool(api.SET_PROVIDER_KEY, svc.config.pool_id)
        reply = await nc.request(subject, msgspec.json.encode(
            {"provider": "vastai", "api_key": secret, "actor": "admin:test"}), timeout=5)
        assert msgspec.json.decode(reply.data)["ok"] is True
        bad = await nc.request(subject, msgspec.json.encode({"api_key": 5}), timeout=5)
        body = msgspec.json.decode(bad.data)
        assert body["error"]["code"] == "VALIDATION_FAILED"
        await svc.commands.prewarm(api.PrewarmRequest(count=1))
        await eventually(lambda: ready_count(svc) == 1)  # only possible with the new key
    assert secret not in caplog.text
    records = await pool_events(js, svc.config.pool_id)
    assert all(secret not in str(r.envelope) for r in records)


async def test_stuck_loading_times_out_and_a_vanished_instance_is_marked_lost(nc, js):
    async with pool_stack(nc, js, SimConfig(**FAST_SIM)) as (sim, [svc]):
        await svc.commands.configure(api.ConfigureRequest(changes={"readiness": {"probe_timeout_s": 2.0}}))
        async with httpx.AsyncClient() as client:
            await client.post(f"{sim.url}/_sim/faults", json={"stuck_loadings": 1})
        [stuck] = (await svc.commands.prewarm(api.PrewarmRequest(count=1)))["instance_ids"]
        inst = await eventually(lambda: svc.view.instances.get(stuck) and svc.view.instances[stuck].phase == "terminated"
                                and svc.view.instances[stuck], timeout=20)
        assert inst.terminate_reason == "probe_timeout" and inst.failure == "probe_timeout"
        assert inst.offer.host_id in {p.host_id for p in svc.view.penalties.values()}

        await svc.commands.configure(api.ConfigureRequest(changes={"readiness": {"probe_timeout_s": 30.0}}))
        [iid] = (await svc.commands.prewarm(api.PrewarmRequest(count=1)))["instance_ids"]
        ready = await eventually(lambda: svc.view.instances.get(iid) and svc.view.instances[iid].phase == "ready"
                                 and svc.view.instances[iid])
        async with httpx.AsyncClient() as client:
            await client.post(f"{sim.url}/_sim/instances/{ready.provider_id}/vanish")
        lost = await eventually(lambda: svc.view.instances[iid].phase == "terminated" and svc.view.instances[iid])
        assert lost.terminate_reason == "provider_lost"
        assert billing_ids(await sim_state(sim)) == set()


async def test_budget_breach_while_nats_is_down_terminates_and_is_recorded_afterwards(nc, js, nats_server) -> None:
    today = datetime.now(timezone.utc).replace(hour=1, minute=0, second=0, microsecond=0)
    now = [today]  # the pool's clock: 01:00 today, moved by the test
    sim = await start_sim(SimConfig(**FAST_SIM))
    provider = VastAIProvider("sim-key", sim.url, retries=8)
    pool_id = "o" + new_id().replace("-", "")[-12:]
    # A long lease: the leader keeps acting on its last known state for its TTL while NATS is down.
    config = ServiceConfig(pool_id=pool_id, replica="r0", reconcile_interval_s=0.2, leader_ttl_s=30.0,
                           listing_grace_s=3.0, rent_grace_s=4.0)
    svc = PoolService(nc, js, provider, config=config, clock=lambda: now[0])
    try:
        await svc.start()
        await svc.commands.configure(api.ConfigureRequest(changes={**FAST_READINESS, "desired_size": 1}))
        inst = await eventually(lambda: next((i for i in svc.view.instances.values() if i.phase == "ready"), None),
                                timeout=30)
        await svc.commands.configure(api.ConfigureRequest(changes={"spend_caps": {"max_per_day": inst.dph * 5}}))
        assert billing_ids(await sim_state(sim)) == {inst.provider_id}

        await nats_server.stop()
        now[0] = today + timedelta(hours=10)  # ten hours at inst.dph: twice the daily cap
        await eventually(lambda: not nc.is_connected, timeout=10)
        # Terminated at the provider from the last known state, with NATS still down.
        async def gone() -> bool:
            return billing_ids(await sim_state(sim)) == set()

        await eventually(gone, timeout=15)
        assert not nc.is_connected and len(svc.reconciler.outbox) >= 1
        assert svc.view.instances[inst.id].phase == "ready"  # nothing could be recorded yet

        await nats_server.start()
        await eventually(lambda: svc.view.instances[inst.id].phase == "terminated", timeout=30)
        assert svc.view.safe_mode and len(svc.reconciler.outbox) == 0
        events = [r.event for r in await pool_events(js, pool_id)]
        safe = [e for e in events if isinstance(e, ev.SafeModeChanged)]
        assert safe and safe[0].enabled and safe[0].reason == "budget_day"
        ended = [e for e in events if isinstance(e, ev.TerminateRequested | ev.Terminated)]
        assert [type(e) for e in ended] == [ev.TerminateRequested, ev.Terminated]
        assert ended[0].reason == ended[1].reason == "budget"
    finally:
        await svc.stop()
        await provider.aclose()
        await sim.close()
