"""FakeProvider: the in-memory marketplace the pool's tests run against."""

from __future__ import annotations

import pytest

from libs.events.pool import InstanceTemplate, Offer, OfferFilter
from services.pool.providers.base import OfferUnavailable, Provider, ProviderError, ProviderInstance
from services.pool.providers.fake import Call, FakeProvider

pytestmark = pytest.mark.timeout(5)


def offer(oid: str, gpu: str = "RTX 4090", dph: float = 0.4, host: str = "h1") -> Offer:
    return Offer(offer_id=oid, gpu_name=gpu, dph=dph, host_id=host, machine_id="m" + oid, disk_gb=500,
                 reliability=0.99)


async def test_search_filters_and_ranks_like_the_real_provider() -> None:
    p = FakeProvider([offer("1", "RTX 3090", 0.2), offer("2", dph=0.5), offer("3", dph=0.4),
                      offer("4", dph=0.1, host="bad"), offer("5", dph=2.0), offer("6", "H100 SXM", 0.3)])
    found = await p.search_offers(OfferFilter(gpu_names=("RTX 4090", "RTX 3090")), exclude_hosts=frozenset({"bad"}))
    assert [o.offer_id for o in found] == ["3", "2", "1"]
    assert p.calls_to("search_offers")[0].args["exclude_hosts"] == frozenset({"bad"})


async def test_rent_list_show_destroy() -> None:
    p: Provider = FakeProvider([offer("1")], clock=lambda: 5.0)
    pid = await p.create_instance(offer("1"), InstanceTemplate(), label="stoker:p:i", env={"HF_TOKEN": "t"})
    [inst] = await p.list_instances()
    assert inst == ProviderInstance(provider_id=pid, label="stoker:p:i", intended_status="running", host_id="h1",
                                    machine_id="m1", gpu_name="RTX 4090", dph=0.4, start_date=5.0)
    with pytest.raises(OfferUnavailable):  # the offer left the market
        await p.create_instance(offer("1"), InstanceTemplate(), label="x", env={})
    await p.destroy_instance(pid)
    await p.destroy_instance(pid)  # gone already: fine
    assert await p.show_instance(pid) is None and await p.list_instances() == []


async def test_failure_injection_and_call_log() -> None:
    p = FakeProvider([offer("1")])
    p.fail_next("create_instance", OfferUnavailable("taken"))
    p.fail_next("*", times=2)
    with pytest.raises(OfferUnavailable):
        await p.create_instance(offer("1"), InstanceTemplate(), label="l", env={})
    for _ in range(2):
        with pytest.raises(ProviderError) as info:
            await p.list_instances()
        assert info.value.retryable
    assert await p.list_instances() == []
    assert [c.method for c in p.calls] == ["create_instance"] + ["list_instances"] * 3
    with pytest.raises(ValueError):
        p.fail_next("rent")
    await p.aclose()
    assert p.closed and p.calls[-1] == Call("aclose")


async def test_status_helpers_vanish_lag_and_zombies() -> None:
    p = FakeProvider([offer("1"), offer("2")])
    p.hide_new = True
    a = await p.create_instance(offer("1"), InstanceTemplate(), label="l", env={})
    assert await p.list_instances() == [] and await p.show_instance(a) is None
    p.reveal()
    p.set_instance(a, actual_status="loading", status_msg="pulling")
    shown = await p.show_instance(a)
    assert shown is not None
    assert (shown.actual_status, shown.status_msg, shown.comfy_url) == ("loading", "pulling", None)
    assert p.make_running(a, "http://127.0.0.1:1").comfy_url == "http://127.0.0.1:1"
    p.zombie_destroys = 1
    await p.destroy_instance(a)
    assert await p.show_instance(a) is not None
    p.vanish(a)
    assert await p.show_instance(a) is None
