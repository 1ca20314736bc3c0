"""VastAIProvider against the built-in simulator over real HTTP: the whole rental life, paging, 429s, auth."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import httpx
import msgspec
import pytest
import pytest_asyncio

from libs.events.pool import InstanceTemplate, Offer, OfferFilter
from services.pool.providers.base import OfferUnavailable, ProviderError
from services.pool.providers.factory import make_provider
from services.pool.providers.vastai import VastAIProvider
from services.pool.sim.server import SimServer, start_sim
from services.pool.sim.testing import FAST_CONFIG, eventually

pytestmark = pytest.mark.timeout(30)

KEY = "sim-key-7c1d9e4b2a"
TOKEN = "hf_TOPSECRETtoken998877"
LOOSE = OfferFilter(gpu_names=(), max_dph=5.0, min_disk_gb=100.0, min_direct_ports=0, min_reliability=0.0,
                    verified_only=False)
TEMPLATE = InstanceTemplate(image="vastai/comfy:latest", disk_gb=100.0, ports=(8188, 22), onstart="true")


@pytest_asyncio.fixture
async def sim() -> AsyncIterator[SimServer]:
    config = msgspec.structs.replace(FAST_CONFIG, api_key=KEY, listing_lag=0.3, offer_count=40,
                                     rate_limit_retry_after=0.05)
    server = await asyncio.wait_for(start_sim(config), 10)
    yield server
    await asyncio.wait_for(server.close(), 10)


@pytest_asyncio.fixture
async def provider(sim: SimServer) -> AsyncIterator[VastAIProvider]:
    p = make_provider({"STOKER_PROVIDER": "sim", "VAST_URL": sim.url, "VAST_API_KEY": KEY})
    assert isinstance(p, VastAIProvider)
    yield p
    await p.aclose()


INSTANCE_SECRET = "instance-secret-" + "9" * 24


async def test_search_rent_list_show_destroy(provider: VastAIProvider, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)  # httpx and httpcore included: nothing secret may show up
    offers = await provider.search_offers(LOOSE, limit=5)
    assert offers and [o.dph for o in offers] == sorted(o.dph for o in offers)
    offer = offers[0]
    pid = await provider.create_instance(offer, TEMPLATE, label="stoker:pool-a:i1",
                                         env={"HF_TOKEN": TOKEN, "STOKER_INSTANCE_SECRET": INSTANCE_SECRET})
    with pytest.raises(OfferUnavailable):
        await provider.create_instance(offer, TEMPLATE, label="stoker:pool-a:i2", env={})

    async def listed() -> bool:  # the sim hides a new rental for listing_lag seconds
        return any(i.provider_id == pid for i in await provider.list_instances())
    await eventually(listed, timeout=10)

    async def comfy() -> str | None:
        shown = await provider.show_instance(pid)
        return shown.comfy_url if shown else None
    url = await eventually(comfy, timeout=10)
    shown = await provider.show_instance(pid)
    assert shown is not None and shown.label == "stoker:pool-a:i1" and shown.host_id == offer.host_id
    assert shown.machine_id == offer.machine_id and shown.dph > 0 and shown.start_date
    async with httpx.AsyncClient() as client:
        async def answers() -> bool:  # mapped before ComfyUI has booted: 502 until then
            auth = {"Authorization": f"Bearer {INSTANCE_SECRET}"}
            return (await client.get(url + "/system_stats", headers=auth, timeout=5)).status_code == 200
        await eventually(answers, timeout=10)
        assert (await client.get(url + "/system_stats", timeout=5)).status_code == 401

    await provider.destroy_instance(pid)
    assert await provider.show_instance(pid) is None
    assert pid not in {i.provider_id for i in await provider.list_instances()}
    await provider.destroy_instance(pid)  # gone already: not an error
    assert KEY not in caplog.text and TOKEN not in caplog.text and INSTANCE_SECRET not in caplog.text


async def test_list_pages_through_more_than_25(sim: SimServer, provider: VastAIProvider) -> None:
    async with httpx.AsyncClient() as client:
        resp = await client.post(sim.url + "/api/v0/bundles/", json={"rentable": {"eq": True}, "limit": 100},
                                 headers={"Authorization": f"Bearer {KEY}"})
    rows = resp.json()["offers"]
    assert len(rows) >= 27
    for row in rows[:27]:
        await provider.create_instance(Offer(offer_id=str(row["id"]), gpu_name=row["gpu_name"], dph=1.0,
                                             host_id=str(row["host_id"]), machine_id=str(row["machine_id"])),
                                       TEMPLATE, label="page-test", env={})

    async def all_listed() -> bool:
        return len(await provider.list_instances()) == 27
    await eventually(all_listed, timeout=10)


async def test_429s_are_waited_out(sim: SimServer, provider: VastAIProvider,
                                   caplog: pytest.LogCaptureFixture) -> None:
    async with httpx.AsyncClient() as client:
        resp = await client.post(sim.url + "/_sim/faults", json={"rate_limited_requests": 2})
        assert resp.status_code == 200
    assert await provider.list_instances() == []
    assert sum("HTTP 429; retry" in r.getMessage() for r in caplog.records) == 2


async def test_a_wrong_key_is_refused_without_showing_either_key(sim: SimServer,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = "wrong-key-5566778899"
    p = VastAIProvider(wrong, sim.url)
    with pytest.raises(ProviderError) as info:
        await p.list_instances()
    assert info.value.status == 401 and not info.value.retryable and "Invalid user key" in str(info.value)
    p.set_api_key(KEY)
    assert await p.list_instances() == []
    await p.aclose()
    for text in (caplog.text, str(info.value), repr(p)):
        assert wrong not in text and KEY not in text
