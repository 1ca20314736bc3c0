"""A whole generation stack for tests and the benchmark: simulator, pool service, generation service.

``gen_stack(nats_url)`` starts the marketplace simulator (fast timings), a pool service on a
fresh pool id that keeps ``instances`` simulated ComfyUI hosts Ready with ``MODELS``, and a
generation service bound to that pool. Everything stops when the context exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx
import msgspec
import nats
from nats.aio.client import Client

from libs.events import Recorded, codec
from libs.events import generation as ev
from libs.events.ids import new_id
from services.pool import api as pool_api
from services.pool.app import PoolService, ServiceConfig
from services.pool.providers.vastai import VastAIProvider
from services.pool.sim.config import SimConfig
from services.pool.sim.server import SimServer, start_sim
from services.pool.sim.testing import FAST_CONFIG
from services.pool.view import PoolView

from . import api
from .app import GenerationService
from .config import gen_config
from .runner import job_aggregate

T = TypeVar("T")
MODELS = ("sd15.safetensors",)
FAST_GEN_ENV = {"STOKER_GEN_ACK_WAIT": "2", "STOKER_GEN_LOST_AFTER": "1.5", "STOKER_GEN_POLL": "0.5",
                "STOKER_GEN_CLAIM_WAIT": "1", "STOKER_GEN_RETRY": "0.2", "STOKER_GEN_LEASE": "30",
                "STOKER_WEBHOOK_ALLOW_PRIVATE": "1", "STOKER_WEBHOOK_BACKOFF": "0.2",
                "STOKER_WEBHOOK_BACKOFF_MAX": "1", "STOKER_GEN_DRAIN": "2"}
PERMISSIVE_OFFERS = {"gpu_names": [], "max_dph": 100.0, "min_disk_gb": 0, "min_reliability": 0,
                     "verified_only": False, "min_direct_ports": 0}


async def eventually(probe: Callable[[], Any], timeout: float = 20.0, every: float = 0.05) -> Any:
    """Poll ``probe`` (sync or async) until it returns something truthy."""
    async with asyncio.timeout(timeout):
        while True:
            value = probe()
            if asyncio.iscoroutine(value):
                value = await value
            if value:
                return value
            await asyncio.sleep(every)


@dataclass
class Stack:
    """A running simulator + pool + generation service."""

    sim: SimServer
    pool: PoolService
    gen: GenerationService | None
    pool_id: str
    nc: Client
    env: dict[str, str]

    async def request(self, subject: str, body: dict[str, Any], timeout: float = 10.0) -> api.Reply:
        """Send one API request; returns the decoded reply."""
        msg = await self.nc.request(api.for_pool(subject, self.pool_id), codec.encode(body), timeout=timeout)
        return msgspec.json.decode(msg.data, type=api.Reply)

    async def ok(self, subject: str, body: dict[str, Any], timeout: float = 10.0) -> Any:
        """Send one API request that must succeed; returns its result."""
        reply = await self.request(subject, body, timeout)
        assert reply.ok, reply.error
        return reply.result

    async def events(self, job_id: str) -> list[Recorded]:
        """A job's recorded events."""
        return list(await self.pool.writer.store.load(job_aggregate(job_id)))

    async def wait_status(self, user_id: str, job_id: str, statuses: tuple[str, ...] = ("completed", "failed",
                                                                                       "cancelled"),
                          timeout: float = 20.0) -> dict[str, Any]:
        """Poll ``get`` until the job reaches one of ``statuses``."""
        async def probe() -> dict[str, Any] | None:
            job: dict[str, Any] = await self.ok(api.GET, {"actor": "test", "user_id": user_id, "job_id": job_id})
            return job if job["status"] in statuses else None
        found: dict[str, Any] = await eventually(probe, timeout)
        return found

    def provider_id(self, instance_id: str) -> str:
        """The simulator's id of a pool instance."""
        return self.pool.view.instances[instance_id].provider_id

    async def sim_post(self, path: str) -> None:
        """POST to the simulator's control API."""
        async with httpx.AsyncClient() as client:
            resp = await client.post(f"{self.sim.url}{path}")
            assert resp.status_code == 200, resp.text


def ready(pool: PoolService) -> int:
    """Ready or claimed instances of a pool."""
    return sum(1 for i in pool.view.instances.values() if i.phase in ("ready", "claimed"))


@contextlib.asynccontextmanager
async def gen_stack(nats_url: str, *, instances: int = 1, max_size: int | None = None,
                    sim_config: SimConfig = FAST_CONFIG, gen_env: dict[str, str] | None = None,
                    start_gen: bool = True, models: tuple[str, ...] = MODELS) -> AsyncIterator[Stack]:
    """Start the stack and wait until ``instances`` hosts are Ready."""
    sim = await start_sim(sim_config)
    nc = await nats.connect(nats_url)
    js = nc.jetstream(timeout=10)
    provider = VastAIProvider("sim-key", sim.url, retries=8)
    pool_id = "g" + new_id().replace("-", "")[-12:]
    pool = PoolService(nc, js, provider, config=ServiceConfig(
        pool_id=pool_id, reconcile_interval_s=0.2, leader_ttl_s=1.5, listing_grace_s=3.0, rent_grace_s=4.0,
        replica=f"pool-{pool_id}"))
    env = {**FAST_GEN_ENV, "STOKER_POOL_ID": pool_id, "NATS_URL": nats_url, **(gen_env or {})}
    gen: GenerationService | None = None
    gen_nc: Client | None = None
    try:
        await pool.start()
        await pool.commands.configure(pool_api.ConfigureRequest(changes={
            "desired_size": instances, "max_size": max_size if max_size is not None else max(instances, 1),
            "idle_timeout_s": 600.0, "offer_filter": PERMISSIVE_OFFERS, "template": {"models": list(models)},
            "readiness": {"probe_initial_backoff_s": 0.1, "probe_max_backoff_s": 0.3, "probe_timeout_s": 30,
                          "required_models": list(models)}}))
        await eventually(lambda: ready(pool) >= instances, timeout=30)
        if start_gen:
            gen_nc = await nats.connect(nats_url)
            gen = GenerationService(gen_nc, gen_nc.jetstream(timeout=10), gen_config(env))
            await gen.start()
            started = gen
            await eventually(lambda: sum(1 for i in (started.pool_view() or PoolView()).instances.values()
                                         if i.phase == "ready") >= instances)
        yield Stack(sim, pool, gen, pool_id, nc, env)
    finally:
        if gen is not None:
            await gen.stop()
        if gen_nc is not None:
            await gen_nc.drain()
        with contextlib.suppress(Exception):
            await pool.commands.safe_mode(pool_api.SafeModeRequest(enabled=True))
        await pool.stop()
        await provider.aclose()
        await sim.close()
        await nc.drain()


def event_types(records: list[Recorded]) -> list[str]:
    """Names of recorded events, in order."""
    return [type(r.event).__name__ for r in records]


def completed(records: list[Recorded]) -> list[ev.GenerationCompleted]:
    """The completion events among records."""
    return [r.event for r in records if isinstance(r.event, ev.GenerationCompleted)]


async def timed(fn: Callable[[], Awaitable[T]]) -> tuple[T, float]:
    """Run ``fn`` and return its result and the seconds it took."""
    t0 = time.perf_counter()
    value = await fn()
    return value, time.perf_counter() - t0


__all__ = ["MODELS", "Stack", "completed", "event_types", "eventually", "gen_stack", "ready", "timed"]
