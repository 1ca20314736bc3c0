"""The pool through the agent on the simulator's hosts: phases as events, logs, early disk refusal, problems."""

from typing import Any

import pytest

from libs.events import Recorded
from libs.events import pool as ev
from libs.events import subjects
from libs.events.replay import replay
from services.pool import api
from services.pool.handlers import summary
from services.pool.sim.config import SimConfig
from tests.integration.test_pool_scenarios import FAST_SIM, eventually, pool_stack

MODEL = "https://huggingface.co/x/resolve/main/sdxl_base.safetensors"
LORA = "loras:https://civitai.com/api/download/models/42/face_lora.safetensors"


async def instance_events(js, iid: str) -> list[Any]:
    out = []
    async for rec in replay(js, subjects.event_stream(subjects.POOL), subjects.events_filter(subjects.POOL)):
        if isinstance(rec, Recorded) and rec.envelope.aggregate_id == iid:
            out.append(rec.envelope.event)
    return out


@pytest.mark.timeout(60)
async def test_agent_phases_and_progress_are_pool_events(nc, js) -> None:
    sim_config = SimConfig(**{**FAST_SIM, "model_download_seconds": 1.0})
    async with pool_stack(nc, js, sim_config) as (sim, [svc]):
        await svc.commands.configure(api.ConfigureRequest(changes={
            "template": {"models": [MODEL, LORA]}, "readiness": {"required_models": ["sdxl_base.safetensors"]}}))
        [iid] = (await svc.commands.prewarm(api.PrewarmRequest(count=1)))["instance_ids"]
        await eventually(lambda: svc.view.instances.get(iid) and svc.view.instances[iid].phase == "ready", 40)
        reports = [e for e in await instance_events(js, iid) if isinstance(e, ev.AgentReported)]
        phases = [r.phase for r in reports]
        assert "downloading" in phases and phases[-1] == "ready", phases
        downloading = [r for r in reports if r.phase == "downloading"]
        assert any(0 < r.bytes_done < (r.bytes_total or 0) for r in downloading), downloading  # progress in between
        assert reports[-1].comfyui_version == "0.3.64" and reports[-1].bytes_done == reports[-1].bytes_total
        row = next(i for i in summary(svc.view, svc.clock())["instances"] if i["id"] == iid)
        assert row["agent"]["phase"] == "ready" and row["ssh_host"].endswith(".vast.ai") and row["ssh_port"] > 0
        assert row["provider_id"] and row["last_probe_error"] is None and row["logs_url"].endswith(f"{iid}/logs")
        logs = await svc.commands.host_logs(api.HostLogsRequest(instance_id=iid, tail=500))
        assert any("downloading checkpoints/sdxl_base.safetensors" in line for line in logs["agent"])
        assert any("phase ready" in line for line in logs["agent"]) and logs["comfyui"]
        secret = svc.reconciler.secret_for(iid)
        assert secret and all(secret not in repr(e) for e in await instance_events(js, iid))


@pytest.mark.timeout(60)
async def test_a_model_that_does_not_fit_fails_early_with_a_reason(nc, js) -> None:
    async with pool_stack(nc, js, SimConfig(**FAST_SIM)) as (sim, [svc]):
        await svc.commands.configure(api.ConfigureRequest(changes={
            "template": {"models": [MODEL], "disk_gb": 6.0}, "offer_filter": {"min_disk_gb": 6.0}}))
        [iid] = (await svc.commands.prewarm(api.PrewarmRequest(count=1)))["instance_ids"]
        inst = await eventually(lambda: svc.view.instances.get(iid) and svc.view.instances[iid].terminate_reason
                                and svc.view.instances[iid], 40)
        assert inst.terminate_reason == "agent_failed" and inst.agent_phase == "failed"
        assert "not enough disk for checkpoints/sdxl_base.safetensors" in inst.agent_reason
        assert "disk_gb" in (inst.failure or "")
        requested = [e for e in await instance_events(js, iid) if isinstance(e, ev.TerminateRequested)]
        assert requested[0].reason == "agent_failed" and "not enough disk" in requested[0].detail


@pytest.mark.timeout(60)
async def test_provider_auth_failure_is_a_problem_until_the_key_is_fixed(nc, js) -> None:
    async with pool_stack(nc, js, SimConfig(**FAST_SIM, api_key="the-right-key")) as (sim, [svc]):
        await eventually(lambda: "provider_auth" in svc.view.problems, 20)
        problem = summary(svc.view, svc.clock())["problems"][0]
        assert problem["code"] == "provider_auth" and "Invalid user key" in problem["message"]
        assert problem["since"] and "the-right-key" not in problem["message"] and "sim-key" not in problem["message"]
        svc.reconciler.set_api_key("the-right-key")
        await eventually(lambda: not svc.view.problems, 20)


@pytest.mark.timeout(60)
async def test_no_matching_offer_is_a_problem(nc, js) -> None:
    async with pool_stack(nc, js, SimConfig(**FAST_SIM)) as (sim, [svc]):
        await svc.commands.configure(api.ConfigureRequest(changes={
            "offer_filter": {"gpu_names": ["H200 NVL"]}, "desired_size": 1}))
        await eventually(lambda: "no_offers" in svc.view.problems, 20)
        assert "H200 NVL" in svc.view.problems["no_offers"].message
        await svc.commands.configure(api.ConfigureRequest(changes={"desired_size": 0}))
        await eventually(lambda: "no_offers" not in svc.view.problems, 20)


class _Unreachable:
    """A provider whose every call fails like a network outage."""

    name = "sim"

    async def list_instances(self):
        from services.pool.providers.base import ProviderError
        raise ProviderError("Vast.ai GET /api/v1/instances/ failed after 5 attempts: ConnectError", retryable=True)


@pytest.mark.timeout(60)
async def test_a_listing_blip_is_not_a_problem_but_an_outage_is(nc, js) -> None:
    from services.pool.reconciler import Reconciler

    async with pool_stack(nc, js, SimConfig(**FAST_SIM), reconcile_interval_s=3600) as (sim, [svc]):
        outage = Reconciler(svc.writer, _Unreachable(), svc.probe, clock=svc.clock)  # type: ignore[arg-type]
        await outage.run_once()
        await outage.run_once()
        assert "provider_unreachable" not in svc.view.problems  # two failed passes: a blip
        await outage.run_once()
        assert "ConnectError" in svc.view.problems["provider_unreachable"].message
