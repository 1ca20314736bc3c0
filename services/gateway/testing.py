"""Helpers for the gateway's tests and benchmark: configurations, a running gateway, a pool on the simulator."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

from aiohttp import test_utils, web
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext

from libs.events.ids import new_id
from libs.contracts.audit import fingerprint
from services.gateway.app import create_app

T = TypeVar("T")

ADMIN_KEY = "test-admin-key-5d1f0c9e7a3b4c2d8e6f"
ADMIN = {"X-Admin-Api-Key": ADMIN_KEY}
ADMIN_ACTOR = f"admin:{fingerprint(ADMIN_KEY)}"
PASSWORD = "correct horse battery"
FAST_SIM: dict[str, Any] = {"schedule_delay": 0.1, "pull_seconds": 0.3, "extract_seconds": 0.2, "comfy_boot_delay": 0.3,
            "model_download_seconds": 0.1, "tick_seconds": 0.05}
FAST_READINESS = {"readiness": {"probe_initial_backoff_s": 0.1, "probe_max_backoff_s": 0.5, "probe_timeout_s": 30}}


def unique_pool_id() -> str:
    """A pool id no other test uses."""
    return "g" + new_id().replace("-", "")[-12:]


def gateway_env(nats_url: str, database_url: str, **overrides: str) -> dict[str, str]:
    """A test configuration: a good admin key, limits off unless overridden."""
    env = {"NATS_URL": nats_url, "DATABASE_URL": database_url, "STOKER_ADMIN_KEY": ADMIN_KEY,
           "STOKER_POOL_ID": unique_pool_id(), "STOKER_RATE_LIMIT_API": "off", "STOKER_RATE_LIMIT_LOGIN": "off",
           "STOKER_POOL_TIMEOUT_S": "5",
           "STOKER_SCRYPT_N": "16384"}  # tests make many accounts: the lowest cost allowed (production: 2^17)
    env.update(overrides)
    return env


gateway_env.__test__ = False  # type: ignore[attr-defined]


@contextlib.asynccontextmanager
async def gateway_client(env: dict[str, str], **kwargs: Any) -> AsyncIterator[test_utils.TestClient[web.Request, web.Application]]:
    """A started gateway behind an aiohttp test client."""
    app = create_app(env, **kwargs)
    async with test_utils.TestClient(test_utils.TestServer(app)) as client:
        yield client


async def eventually(predicate: Callable[[], Any | Awaitable[Any]], timeout: float = 20.0, every: float = 0.1) -> Any:
    """Poll until ``predicate`` returns something truthy (awaiting it if needed); that value."""
    async with asyncio.timeout(timeout):
        while True:
            value = predicate()
            if asyncio.iscoroutine(value):
                value = await value
            if value:
                return value
            await asyncio.sleep(every)


async def user_token(client: test_utils.TestClient[web.Request, web.Application], username: str, role: str = "user") -> tuple[str, str]:
    """Register an account (as admin) and sign it in; (user id, session token)."""
    resp = await client.post("/api/v1/auth/register", json={"username": username, "password": PASSWORD, "role": role},
                             headers=ADMIN)
    assert resp.status == 201, await resp.text()
    user_id = (await resp.json())["id"]
    resp = await client.post("/api/v1/auth/login", json={"username": username, "password": PASSWORD})
    assert resp.status == 200, await resp.text()
    client.session.cookie_jar.clear()  # tests say which credential they use
    return user_id, (await resp.json())["token"]


def bearer(token: str) -> dict[str, str]:
    """The Authorization header for a token."""
    return {"Authorization": f"Bearer {token}"}


@contextlib.asynccontextmanager
async def pool_on_sim(nc: NatsClient, js: JetStreamContext, pool_id: str, *, sim: dict[str, Any] | None = None,
                      **overrides: Any) -> AsyncIterator[Any]:
    """A real pool service renting from the marketplace simulator, on fast timings (``sim``: SimConfig changes)."""
    from services.pool import api
    from services.pool.app import PoolService, ServiceConfig
    from services.pool.providers.vastai import VastAIProvider
    from services.pool.sim.config import SimConfig
    from services.pool.sim.server import start_sim

    market = await start_sim(SimConfig(**{**FAST_SIM, **(sim or {})}))
    provider = VastAIProvider("sim-key", market.url, retries=8)
    settings: dict[str, Any] = {"pool_id": pool_id, "reconcile_interval_s": 0.2, "leader_ttl_s": 1.5,
                                "listing_grace_s": 3.0, "rent_grace_s": 4.0}
    settings.update(overrides)
    service = PoolService(nc, js, provider, config=ServiceConfig(replica="gw-test", **settings))
    try:
        await service.start()
        await service.commands.configure(api.ConfigureRequest(changes=FAST_READINESS))
        yield service
    finally:
        await service.stop()
        await provider.aclose()
        await market.close()


@contextlib.asynccontextmanager
async def generation_on(nats_url: str, pool_id: str, **env: str) -> AsyncIterator[Any]:
    """A generation service bound to ``pool_id``, without a worker unless ``STOKER_GEN_WORKER=1`` is given.

    On exit, jobs requested while it ran and still queued are cancelled (their work-queue messages
    removed), so a later test's worker never picks them up.
    """
    import nats

    from services.generation import api
    from services.generation.app import GenerationService
    from services.generation.config import gen_config

    nc = await nats.connect(nats_url)
    config = gen_config({"NATS_URL": nats_url, "STOKER_POOL_ID": pool_id, "STOKER_GEN_WORKER": "0", **env})
    service = GenerationService(nc, nc.jetstream(timeout=10), config)
    since: int | None = None
    try:
        await service.start()
        since = service.view.seq
        yield service
    finally:
        start = since if since is not None else 2**63  # not started: nothing to clean up
        for job_id, seq in list(service.view.job_seq.items()):
            job = service.view.jobs.get(job_id)
            if seq > start and job is not None and job.status == "queued":
                with contextlib.suppress(Exception):
                    await service.jobs.cancel(api.CancelRequest(actor="test", user_id=job.user_id, job_id=job_id))
        await service.stop()
        await nc.drain()
