"""StaticProvider: fixed ComfyUI hosts that are 'rented' and 'destroyed' only in bookkeeping."""

from __future__ import annotations

import pytest

from libs.events.pool import InstanceTemplate, OfferFilter
from services.pool.providers.base import OfferUnavailable, Provider
from services.pool.providers.static import StaticProvider, static_id

pytestmark = pytest.mark.timeout(5)

URLS = ["http://10.0.0.5:8188/", "https://comfy.example.org"]


def test_ids_are_stable_and_urls_checked() -> None:
    assert static_id("http://10.0.0.5:8188/") == static_id("http://10.0.0.5:8188") != static_id(URLS[1])
    with pytest.raises(ValueError):
        StaticProvider(["10.0.0.5:8188"])
    with pytest.raises(ValueError):
        StaticProvider(["ftp://host"])


async def test_hosts_are_always_running_instances() -> None:
    p: Provider = StaticProvider(URLS, clock=lambda: 100.0)
    listed = await p.list_instances()
    assert [i.comfy_url for i in listed] == ["http://10.0.0.5:8188", "https://comfy.example.org"]
    assert all(i.actual_status == "running" and i.dph == 0.0 and i.label is None for i in listed)
    assert await p.show_instance(listed[0].provider_id) == listed[0]
    assert await p.show_instance("static-unknown") is None


async def test_rent_and_release_only_change_bookkeeping() -> None:
    p = StaticProvider(URLS, clock=lambda: 100.0)
    offers = await p.search_offers(OfferFilter(gpu_names=("RTX 4090",), max_dph=0.1))
    assert len(offers) == 2 and all(o.dph == 0.0 for o in offers)
    pid = await p.create_instance(offers[0], InstanceTemplate(), label="stoker:pool:i1", env={"HF_TOKEN": "x"})
    assert pid == offers[0].offer_id
    shown = await p.show_instance(pid)
    assert shown is not None and shown.label == "stoker:pool:i1" and shown.actual_status == "running"
    assert [o.offer_id for o in await p.search_offers(OfferFilter())] == [offers[1].offer_id]
    with pytest.raises(OfferUnavailable):
        await p.create_instance(offers[0], InstanceTemplate(), label="stoker:pool:i2", env={})
    await p.destroy_instance(pid)
    after = await p.show_instance(pid)
    assert after is not None and after.label is None and after.comfy_url == "http://10.0.0.5:8188"
    assert len(await p.search_offers(OfferFilter())) == 2
    await p.destroy_instance("static-unknown")  # nothing to do, not an error


async def test_excluded_hosts_and_limit_and_free_label() -> None:
    p = StaticProvider(URLS, label="static-free")
    first = static_id(URLS[0])
    assert [o.offer_id for o in await p.search_offers(OfferFilter(), exclude_hosts=frozenset({first}))] == [
        static_id(URLS[1])]
    assert len(await p.search_offers(OfferFilter(), limit=1)) == 1
    assert {i.label for i in await p.list_instances()} == {"static-free"}
    await p.aclose()
