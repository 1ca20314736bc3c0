"""Incident review: events filtered and paged from the streams, and the pool view replayed to a point."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

import msgspec
import pytest
from aiohttp import test_utils

from libs.events import NEW, Aggregate, Metadata, streams, subjects
from libs.events import pool as ev
from libs.events.store import EventStore
from services.gateway import schemas
from services.gateway.testing import (
    ADMIN,
    bearer,
    gateway_client,
    gateway_env,
    unique_pool_id,
    user_token,
)

pytestmark = pytest.mark.timeout(60)
T0 = datetime(2031, 3, 1, 23, 0, tzinfo=UTC)
OFFER = ev.Offer(offer_id="o1", gpu_name="RTX 4090", dph=0.5, host_id="h1", machine_id="m1")


class History(NamedTuple):
    client: test_utils.TestClient
    pool_id: str
    instance: str
    ids: dict[str, str]  # event name -> id
    user: str


@pytest.fixture
async def history(nats_url: str, database_url: str, js) -> AsyncIterator[History]:
    """A pool history written at known (future) times: configured, rented, ready, claimed, terminated."""
    await streams.ensure_streams(js)
    pool_id = unique_pool_id()
    clock_at = [T0]
    store = EventStore(js, clock=lambda: clock_at[0])
    meta = Metadata(actor="pool", correlation_id=f"corr-{pool_id}")
    cfg = Aggregate(subjects.POOL, ev.CONFIG, pool_id)
    inst = Aggregate(subjects.POOL, ev.INSTANCE, f"i-{pool_id}")
    ids: dict[str, str] = {}
    config_pos = (await store.append(cfg, [ev.PoolConfigured(pool_id=pool_id, config=ev.PoolConfig(desired_size=1))],
                                     NEW, Metadata(actor="admin:0123456789abcdef")))[-1]
    ids["PoolConfigured"] = config_pos.envelope.id
    steps: list[tuple[timedelta, Any]] = [
        (timedelta(0), ev.RentRequested(pool_id=pool_id, idempotency_key="k", offer=OFFER, provider="sim", label="l")),
        (timedelta(minutes=1), ev.InstanceRented(pool_id=pool_id, provider="sim", provider_id="p1", offer=OFFER,
                                                 dph=0.5, label="l")),
        (timedelta(minutes=31), ev.Ready(pool_id=pool_id, base_url="http://h1:8188")),
        (timedelta(minutes=91), ev.Claimed(pool_id=pool_id, lease_id="L1", holder="job-1",
                                           expires_at=T0 + timedelta(hours=3))),
        (timedelta(minutes=121), ev.TerminateRequested(pool_id=pool_id, reason="admin")),
        (timedelta(minutes=122), ev.Terminated(pool_id=pool_id, reason="admin")),
    ]
    position = NEW
    for offset, event in steps:
        clock_at[0] = T0 + offset
        [rec] = await store.append(inst, [event], position, meta)
        position = (rec.envelope.aggregate_version, rec.seq)
        ids[type(event).__name__] = rec.envelope.id
    async with gateway_client(gateway_env(nats_url, database_url, STOKER_POOL_ID=pool_id)) as client:
        _, token = await user_token(client, "hist-" + pool_id)
        yield History(client, pool_id, inst.id, ids, token)


async def events(h: History, **params: Any) -> tuple[int, dict[str, Any]]:
    resp = await h.client.get("/api/v1/events", params={k: str(v) for k, v in params.items()}, headers=ADMIN)
    return resp.status, await resp.json()


async def test_filters_and_pages(history: History) -> None:
    h = history
    status, page = await events(h, aggregate_type="instance", aggregate_id=h.instance)
    assert status == 200
    msgspec.convert(page, schemas.EventsPage)
    assert [i["type"] for i in page["items"]] == ["RentRequested", "InstanceRented", "Ready", "Claimed",
                                                  "TerminateRequested", "Terminated"]
    first = page["items"][0]
    assert first["aggregate"] == h.instance and first["aggregate_type"] == "instance" and first["stream"] == "EVENTS_POOL"
    assert first["actor"] == "pool" and first["correlation_id"] == f"corr-{h.pool_id}" and first["context"] == "pool"
    assert first["data"]["offer"]["gpu_name"] == "RTX 4090" and "type" not in first["data"]
    assert page["next"] is None

    _, p1 = await events(h, aggregate_id=h.instance, limit=4)
    assert len(p1["items"]) == 4 and p1["next"] == p1["items"][-1]["seq"]
    _, p2 = await events(h, aggregate_id=h.instance, limit=4, after=p1["next"])
    assert [i["type"] for i in p2["items"]] == ["TerminateRequested", "Terminated"] and p2["next"] is None

    _, by_type = await events(h, type="Ready", correlation_id=f"corr-{h.pool_id}")
    assert [i["id"] for i in by_type["items"]] == [h.ids["Ready"]]
    _, by_actor = await events(h, aggregate_type="config", aggregate_id=h.pool_id, actor="admin:0123456789abcdef")
    assert [i["id"] for i in by_actor["items"]] == [h.ids["PoolConfigured"]]


async def test_time_window_is_on_occurred_at(history: History, js) -> None:
    store = EventStore(js)
    agg = Aggregate(subjects.POOL, "probe", history.pool_id)
    recorded = []
    for n in range(3):
        [rec] = await store.append(agg, [ev.PrewarmRequested(pool_id=history.pool_id, count=n)],
                                   recorded[-1].position if recorded else NEW, Metadata(actor="pool"))
        recorded.append(_At(rec.envelope.occurred_at, (rec.envelope.aggregate_version, rec.seq), rec.envelope.id))
        await asyncio.sleep(0.05)
    _, window = await events(history, aggregate_type="probe", aggregate_id=history.pool_id,
                             since=recorded[1].at.isoformat(), until=recorded[1].at.isoformat())
    assert [i["id"] for i in window["items"]] == [recorded[1].id]
    _, later = await events(history, aggregate_type="probe", aggregate_id=history.pool_id,
                            since=recorded[1].at.isoformat())
    assert [i["id"] for i in later["items"]] == [recorded[1].id, recorded[2].id]


class _At(NamedTuple):
    at: datetime
    position: Any
    id: str


async def test_bad_filters_are_validation_errors(history: History) -> None:
    for params in [{"aggregate_id": "a.>"}, {"aggregate_type": "*"}, {"limit": 0}, {"limit": "many"},
                   {"context": "nope"}, {"since": "2031-03-01T00:00:00"}, {"after": -1}, {"bogus": 1},
                   {"since": "2031-03-02T00:00:00Z", "until": "2031-03-01T00:00:00Z"}, {"type": "Ready\n"}]:
        status, body = await events(history, **params)
        assert status == 422, params
        assert body["error"]["code"] == "VALIDATION_FAILED"


async def test_state_at_an_event_or_a_time(history: History) -> None:
    h = history

    async def state(at: str) -> tuple[int, dict[str, Any]]:
        resp = await h.client.get("/api/v1/state", params={"at": at}, headers=ADMIN)
        return resp.status, await resp.json()

    status, body = await state(h.ids["Claimed"])
    assert status == 200
    msgspec.convert(body, schemas.StateAt)
    [inst] = body["pool"]["instances"]
    assert inst["state"] == "claimed" and inst["lease_holder"] == "job-1"
    assert inst["uptime_s"] == 90 * 60  # rented at T0+1min, claimed at T0+91min
    assert inst["cost_by_state"] == {"loading": pytest.approx(0.25), "idle": pytest.approx(0.5), "busy": 0.0}
    assert body["event"]["id"] == h.ids["Claimed"] and body["pool"]["config"]["desired_size"] == 1

    status, body = await state((T0 + timedelta(minutes=45)).isoformat())
    [inst] = body["pool"]["instances"]
    assert inst["state"] == "ready" and body["event"] is None
    assert inst["accrued_cost"] == pytest.approx(0.5 * 44 / 60)

    status, body = await state(h.ids["Terminated"])
    [inst] = body["pool"]["instances"]
    assert inst["state"] == "terminated" and inst["termination_reason"] == "admin"

    assert (await state("no-such-event"))[0] == 404
    assert (await state("2031-03-01T00:00:00"))[0] == 422  # no offset
    assert (await state("not an id!"))[0] == 422
    resp = await h.client.get("/api/v1/state", headers=ADMIN)
    assert resp.status == 422
    resp = await h.client.get("/api/v1/state", params={"at": h.ids["Ready"]}, headers=bearer(h.user))
    assert resp.status == 403
    resp = await h.client.get("/api/v1/events", headers=bearer(h.user))
    assert resp.status == 403


async def test_usage_splits_by_day_and_state(history: History) -> None:
    resp = await history.client.get("/api/v1/usage", params={"since": "2031-03-01", "until": "2031-03-02"},
                                    headers=ADMIN)
    assert resp.status == 200
    usage = await resp.json()
    day1, day2 = usage["days"]
    # Rented 23:01, ready 23:31, claimed 00:31, terminating 01:01, terminated 01:02 at $0.50/h.
    assert day1["date"] == "2031-03-01" and day1["by_state"]["loading"]["instance_hours"] == pytest.approx(0.5, abs=1e-5)
    assert day1["by_state"]["idle"]["cost"] == pytest.approx(0.5 * 29 / 60, abs=1e-5)
    assert day2["by_state"]["idle"]["cost"] == pytest.approx(0.5 * 31 / 60, abs=1e-5)
    assert day2["by_state"]["busy"]["gpu_hours"] == pytest.approx(0.5, abs=1e-5)
    assert day2["by_state"]["terminating"]["cost"] == pytest.approx(0.5 / 60, abs=1e-5)
    assert usage["total"]["instance_hours"] == pytest.approx(2 + 1 / 60, abs=1e-5)
    assert usage["by_user"] is None
