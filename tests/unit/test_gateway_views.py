"""Usage folding, live fan-out and pool error mapping: pure, or against hand-written fakes."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import msgspec
import nats.errors
import pytest

from libs.events import Envelope, Recorded
from libs.events import pool as ev
from services.gateway import usage as u
from services.gateway.errors import ApiError
from services.gateway.live import (
    QUEUE_SIZE,
    RESYNC,
    LiveHub,
    Message,
    encode_sse,
    redact_summary,
)
from services.gateway.pool_client import PoolClient
from services.gateway.pool_reads import GatewayPoolView, project_gateway
from services.pool import api
from services.pool.view import PoolView

T0 = datetime(2031, 3, 1, 23, 0, tzinfo=UTC)
OFFER = ev.Offer(offer_id="o1", gpu_name="A100", num_gpus=2, dph=1.0, host_id="h1", machine_id="m1")


def fold(events: list[tuple[timedelta, Any]], pool_id: str = "p") -> GatewayPoolView:
    view = GatewayPoolView(pool=PoolView(pool_id=pool_id))
    for n, (offset, event) in enumerate(events, 1):
        env = Envelope(id=f"e{n}", schema=1, aggregate_type=ev.INSTANCE, aggregate_id="i1", aggregate_version=n,
                       occurred_at=T0 + offset, actor="pool", event=event)
        view = project_gateway(view, Recorded("EVENTS_POOL", "ev.pool.instance.i1", n, env))
    return view


LIFE = [
    (timedelta(0), ev.RentRequested(pool_id="p", idempotency_key="k", offer=OFFER, provider="sim", label="l")),
    (timedelta(minutes=30), ev.InstanceRented(pool_id="p", provider="sim", provider_id="1", offer=OFFER, dph=1.0,
                                              label="l")),
    (timedelta(minutes=60), ev.Ready(pool_id="p", base_url="http://x")),
    (timedelta(minutes=90), ev.TerminateRequested(pool_id="p", reason="idle")),
    (timedelta(minutes=96), ev.Terminated(pool_id="p", reason="idle")),
]


def test_usage_is_split_by_utc_day_and_state() -> None:
    view = fold(LIFE)
    out = u.report(view.usage, date(2031, 3, 1), date(2031, 3, 2))
    assert [d["date"] for d in out["days"]] == ["2031-03-01", "2031-03-02"]
    day1, day2 = out["days"]
    assert day1["by_state"] == {"loading": {"instance_hours": 0.5, "gpu_hours": 1.0, "cost": 0.5}}
    assert day2["by_state"]["idle"]["cost"] == 0.5 and day2["by_state"]["terminating"]["cost"] == pytest.approx(0.1)
    assert out["total"]["gpu_hours"] == pytest.approx(2 * 1.1) and out["by_state"]["loading"]["cost"] == 0.5
    # The view's own accounting agrees with the fold.
    inst = view.pool.instances["i1"]
    assert sum(inst.cost_by_phase.values()) == pytest.approx(out["total"]["cost"])
    assert u.report(view.usage, date(2031, 3, 2), date(2031, 3, 2))["total"]["cost"] == pytest.approx(0.6)


def test_running_instances_count_up_to_now_and_other_pools_do_not() -> None:
    view = fold(LIFE[:3])
    now = T0 + timedelta(minutes=75)
    running = u.with_running(view.usage, list(view.pool.instances.values()), now)
    assert u.report(running, date(2031, 3, 1), date(2031, 3, 2))["by_state"]["idle"]["cost"] == pytest.approx(0.25)
    assert fold(LIFE, pool_id="other").usage == u.Usage()


def test_split_by_day() -> None:
    parts = u.split_by_day(T0, T0 + timedelta(hours=26))
    assert parts == [("2031-03-01", 3600.0), ("2031-03-02", 86400.0), ("2031-03-03", 3600.0)]
    assert u.split_by_day(T0, T0) == []


async def test_live_hub_fans_out_by_owner_and_resyncs_slow_clients() -> None:
    hub = LiveHub()
    admin, alice, bob = hub.subscribe(None, True), hub.subscribe("alice", False), hub.subscribe("bob", False)
    hub.publish(Message("job", {"n": 1}, owner="alice"))
    hub.publish(Message("pool", {"n": 2}, 7))
    assert admin.queue.qsize() == 2 and alice.queue.qsize() == 2 and bob.queue.qsize() == 1
    for n in range(QUEUE_SIZE):
        hub.publish(Message("pool", {"n": n}))
    assert bob.queue.get_nowait() == RESYNC and hub.dropped >= 1
    hub.unsubscribe(bob)
    hub.close()
    assert admin.queue.qsize() == 1
    assert encode_sse(Message("pool", {"a": 1}, 3)) == b'id: 3\nevent: pool\ndata: {"a":1}\n\n'


def test_non_admins_do_not_see_where_instances_run() -> None:
    data = {"instances": [{"id": "i", "state": "ready", "base_url": "http://h:1", "provider_id": "9", "host_id": "h",
                           "lease_holder": "job", "lease_expires_at": None, "gpu": "A100"}], "avoided_hosts": ["h"]}
    out = redact_summary(data)
    assert out["instances"][0] == {"id": "i", "state": "ready", "base_url": None, "provider_id": None, "host_id": None,
                                   "lease_holder": None, "lease_expires_at": None, "gpu": "A100"}
    assert out["avoided_hosts"] == [] and data["instances"][0]["base_url"] == "http://h:1"


class FakeNats:
    """Answers requests with a canned reply or raises a canned error."""

    def __init__(self, reply: api.Reply | None = None, error: Exception | None = None) -> None:
        self.reply, self.error, self.sent = reply, error, []
        self.is_connected = True

    async def request(self, subject: str, data: bytes, timeout: float, headers: Any = None) -> Any:
        self.sent.append((subject, data))
        if self.error is not None:
            raise self.error
        return type("Msg", (), {"data": msgspec.json.encode(self.reply)})()


@pytest.mark.parametrize("code, status", [("NO_CAPACITY", 503), ("SAFE_MODE", 409), ("LIMIT", 409),
                                          ("VALIDATION_FAILED", 422), ("NOT_FOUND", 404), ("CONFLICT", 409),
                                          ("INTERNAL", 502), ("SOMETHING_NEW", 502)])
async def test_pool_refusals_map_to_http(code: str, status: int) -> None:
    client = PoolClient(FakeNats(api.Reply(ok=False, error=api.Error(code=code, message="no"))))  # type: ignore[arg-type]
    with pytest.raises(ApiError) as err:
        await client.send(api.PREWARM, api.PrewarmRequest())
    assert err.value.status == status
    assert err.value.code == (code if status != 502 else "POOL_ERROR")


@pytest.mark.parametrize("error", [nats.errors.NoRespondersError(), nats.errors.TimeoutError(),
                                   TimeoutError(), nats.errors.ConnectionClosedError()])
async def test_an_unreachable_pool_is_503(error: Exception) -> None:
    with pytest.raises(ApiError) as err:
        await PoolClient(FakeNats(error=error)).send(api.RESET, api.ResetRequest())  # type: ignore[arg-type]
    assert err.value.status == 503 and err.value.code == "POOL_UNAVAILABLE" and err.value.headers


async def test_pool_results_pass_through() -> None:
    fake = FakeNats(api.Reply(ok=True, result={"safe_mode": True}))
    assert await PoolClient(fake).send(api.SAFE_MODE, api.SafeModeRequest(enabled=True, actor="admin:x")) == {  # type: ignore[arg-type]
        "safe_mode": True}
    assert fake.sent[0][0] == "cmd.pool.default.safe_mode" and b'"actor":"admin:x"' in fake.sent[0][1]


async def test_a_disconnected_bus_is_503_at_once() -> None:
    nc = FakeNats(api.Reply(ok=True, result={}))
    nc.is_connected = False
    client = PoolClient(nc, timeout=30)  # type: ignore[arg-type]
    with pytest.raises(ApiError) as err:
        await client.send(api.STATUS, api.StatusRequest())
    assert err.value.status == 503 and "NATS" in err.value.message and nc.sent == []
