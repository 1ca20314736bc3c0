"""Model download tokens (item 10): the seed's HUGGINGFACE_HUB_TOKEN is HF_TOKEN, and HF/Civitai tokens can be
set at runtime like the provider key, reaching the rented machines through the pool and nothing else."""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any

import pytest
from nats.js.api import RetentionPolicy
from nats.js.errors import NotFoundError

from libs.events.reader import read_until_caught_up
from services.gateway.testing import (
    ADMIN,
    FAST_READINESS,
    FAST_SIM,
    eventually,
    gateway_client,
    gateway_env,
    unique_pool_id,
)
from services.pool import api

pytestmark = pytest.mark.timeout(90)


@contextlib.asynccontextmanager
async def pool_and_market(nc, js, pool_id: str, env: dict[str, str]) -> AsyncIterator[tuple[Any, Any]]:
    """A pool service on the simulator with ``env`` as its environment; (service, simulator)."""
    from services.pool.app import PoolService, ServiceConfig
    from services.pool.providers.vastai import VastAIProvider
    from services.pool.sim.config import SimConfig
    from services.pool.sim.server import start_sim

    market = await start_sim(SimConfig(**FAST_SIM))
    provider = VastAIProvider("sim-key", market.url, retries=8)
    config = ServiceConfig(replica="tok-test", pool_id=pool_id, reconcile_interval_s=0.2, leader_ttl_s=1.5,
                           listing_grace_s=3.0, rent_grace_s=4.0)
    service = PoolService(nc, js, provider, config=config, env=env)
    try:
        await service.start()
        await service.commands.configure(api.ConfigureRequest(changes=FAST_READINESS))
        yield service, market
    finally:
        await service.stop()
        await provider.aclose()
        await market.close()


async def every_message(js) -> bytes:
    blob = []
    for info in await js.streams_info():
        if info.config.retention == RetentionPolicy.WORK_QUEUE:
            for seq in range(max(1, info.state.first_seq), info.state.last_seq + 1):
                with contextlib.suppress(NotFoundError):
                    msg = await js.get_msg(info.config.name, seq)
                    blob += [msg.data or b"", str(msg.headers).encode()]
            continue
        reader = read_until_caught_up(js, info.config.name, ">")
        async with aclosing(reader):
            async for d in reader:
                blob.append(d.data)
    return b"\n".join(blob)


async def rented_env(client, market) -> dict[str, str]:
    before = set(market.market.instances)
    resp = await client.post("/api/v1/pool/prewarm", json={}, headers=ADMIN)
    assert resp.status == 202, await resp.text()

    def new_instance() -> Any:
        fresh = [i for i in market.market.instances.values() if i.id not in before]
        return fresh[0] if fresh else None

    return (await eventually(new_instance, timeout=20)).env


async def test_model_tokens_from_the_seed_name_and_at_runtime(nats_url, database_url, nc, js, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    seed, hf, civitai = (f"hf_{uuid.uuid4().hex}", f"hf_{uuid.uuid4().hex}", f"civ{uuid.uuid4().hex}")
    pool_id = unique_pool_id()
    async with pool_and_market(nc, js, pool_id, {"HUGGINGFACE_HUB_TOKEN": seed}) as (_, market), \
            gateway_client(gateway_env(nats_url, database_url, STOKER_POOL_ID=pool_id)) as client:
        env = await rented_env(client, market)
        assert env.get("HF_TOKEN") == seed  # the seed's variable name works

        answers = []
        resp = await client.post("/api/v1/admin/tokens", json={"hf_token": hf, "civitai_token": civitai},
                                 headers=ADMIN)
        assert resp.status == 200, await resp.text()
        assert await resp.json() == {"updated": ["huggingface", "civitai"]}
        answers.append(await resp.text())
        for body in ({}, {"hf_token": "x y"}, {"hf_token": hf, "other": 1}):
            resp = await client.post("/api/v1/admin/tokens", json=body, headers=ADMIN)
            assert resp.status == 422
            answers.append(await resp.text())
        env = await rented_env(client, market)
        assert env.get("HF_TOKEN") == hf and env.get("CIVITAI_TOKEN") == civitai

    for secret in (seed, hf, civitai):
        assert all(secret not in a for a in answers)
        assert secret.encode() not in await every_message(js)
        assert secret not in caplog.text and all(secret not in str(r.args) for r in caplog.records)
