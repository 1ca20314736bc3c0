"""VastAIProvider against a scripted Vast API (httpx.MockTransport): request shapes, gone semantics, retries."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

import httpx
import msgspec
import pytest

from libs.events.pool import InstanceTemplate, Offer, OfferFilter
from services.pool.providers.base import OfferUnavailable, ProviderError
from services.pool.providers.vastai import VastAIProvider

pytestmark = pytest.mark.timeout(10)

KEY = "vk-3f9c2a7d1e8b4c60a5d2"
BASE = "http://vast.test"
# What the spec observed (§3): every key the CLI sends for `create instance --ssh --direct`.
CREATE_KEYS = {"client_id", "image", "env", "price", "disk", "label", "extra", "onstart", "image_login",
               "python_utf8", "lang_utf8", "use_jupyter_lab", "jupyter_dir", "force", "cancel_unavail",
               "template_hash_id", "user", "runtype"}
LIST_QUERY = ("select_filters=%7B%7D&order_by=%5B%7B%22col%22%3A+%22id%22%2C+%22dir%22%3A+%22asc%22%7D%5D"
              "&limit=25")  # observed (§4)
ROW = {  # the spec's example row (§10)
    "id": 5, "machine_id": 1234, "host_id": 99, "actual_status": "running", "intended_status": "running",
    "status_msg": "success, running vastai/comfy_v1 ", "label": "pool-a", "num_gpus": 1, "gpu_name": "RTX 4090",
    "dph_total": 0.4123, "public_ipaddr": "203.0.113.7",
    "ports": {"22/tcp": [{"HostIp": "0.0.0.0", "HostPort": "40001"}],
              "8188/tcp": [{"HostIp": "0.0.0.0", "HostPort": "40002"}]},
    "start_date": 1763768000.0, "extra_env": [["-p 8188:8188", "1"]],
}
Reply = httpx.Response | Exception | Callable[[httpx.Request], httpx.Response]


class Script:
    """A fake Vast API: records every request and answers from a queue (the last answer repeats)."""

    def __init__(self, *replies: Reply) -> None:
        self.replies = deque(replies)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        reply = self.replies.popleft() if len(self.replies) > 1 else self.replies[0]
        if isinstance(reply, Exception):
            raise reply
        return reply if isinstance(reply, httpx.Response) else reply(request)

    def body(self, i: int = -1) -> Any:
        return msgspec.json.decode(self.requests[i].content)


class FakeTime:
    """Injected clock and sleep: retries take no real time."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def ok(body: Any, status: int = 200, **headers: str) -> httpx.Response:
    return httpx.Response(status, json=body, headers=headers)


def make(script: Script, time: FakeTime | None = None, **kw: Any) -> VastAIProvider:
    t = time or FakeTime()
    return VastAIProvider(KEY, BASE + "/", transport=httpx.MockTransport(script), sleep=t.sleep, clock=t.clock, **kw)


def offer(**kw: Any) -> Offer:
    return Offer(**{"offer_id": "123", "gpu_name": "RTX 4090", "dph": 0.4, "host_id": "99", "machine_id": "1234",
                    **kw})


async def test_search_sends_the_bundles_query() -> None:
    script = Script(ok({"offers": []}))
    p = make(script)
    await p.search_offers(OfferFilter(gpu_names=("RTX 4090", "RTX 3090")), exclude_hosts=frozenset({"7", "x"}))
    req = script.requests[0]
    assert (req.method, str(req.url)) == ("POST", f"{BASE}/api/v0/bundles/")
    assert req.headers["Authorization"] == f"Bearer {KEY}"
    assert req.headers["Content-Type"] == "application/json"
    assert script.body() == {
        "verified": {"eq": True}, "external": {"eq": False}, "rentable": {"eq": True}, "rented": {"eq": False},
        "gpu_name": {"in": ["RTX 4090", "RTX 3090"]}, "num_gpus": {"eq": 1}, "dph_total": {"lte": 1.0},
        "disk_space": {"gte": 250.0}, "direct_port_count": {"gte": 2}, "reliability": {"gte": 0.95},
        "host_id": {"notin": [7]}, "order": [["dph_total", "asc"]], "type": "on-demand", "limit": 256,
        "allocated_storage": 250.0,
    }
    await p.search_offers(OfferFilter(verified_only=False))
    assert "verified" not in script.body() and "host_id" not in script.body()
    await p.aclose()


async def test_search_ranks_by_gpu_priority_then_price_and_rechecks_the_filter() -> None:
    def row(i: int, gpu: str, dph: Any, host: int = 1) -> dict[str, Any]:
        return {"id": i, "gpu_name": gpu, "dph_total": dph, "host_id": host, "machine_id": 10 + i, "num_gpus": 1,
                "disk_space": 500.0, "reliability": 0.99}
    rows = [row(1, "RTX 3090", 0.2), row(2, "RTX 4090", 0.5), row(3, "RTX 4090", 0.4), row(4, "RTX 4090", 0.1, 7),
            row(5, "RTX 4090", 1.5), row(6, "H100 SXM", 0.3), row(7, "RTX 4090", None), {"gpu_name": "RTX 4090"}]
    p = make(Script(ok({"offers": rows})))
    found = await p.search_offers(OfferFilter(gpu_names=("RTX 4090", "RTX 3090")), exclude_hosts=frozenset({"7"}))
    assert [o.offer_id for o in found] == ["3", "2", "1"]
    assert found[0] == Offer(offer_id="3", gpu_name="RTX 4090", num_gpus=1, dph=0.4, host_id="1", machine_id="13",
                             disk_gb=500.0, reliability=0.99)
    assert len(await p.search_offers(OfferFilter(gpu_names=("RTX 4090", "RTX 3090")), limit=1)) == 1
    await p.aclose()


async def test_create_sends_the_clients_body_and_returns_the_contract() -> None:
    script = Script(ok({"success": True, "new_contract": 7835610, "instance_api_key": "abc"}))
    p = make(script)
    template = InstanceTemplate(image="vastai/comfy:latest", disk_gb=50, ports=(8188, 22), onstart="bash /start.sh")
    pid = await p.create_instance(offer(), template, label="stoker:p:i1", env={"HF_TOKEN": "hf_x", "A": "b=c"})
    assert pid == "7835610"
    req = script.requests[0]
    assert (req.method, str(req.url)) == ("PUT", f"{BASE}/api/v0/asks/123/")
    body = script.body()
    assert set(body) == CREATE_KEYS
    assert body["env"] == {"-p 8188:8188": "1", "-p 22:22": "1", "HF_TOKEN": "hf_x", "A": "b=c"}
    assert list(body["env"])[:2] == ["-p 8188:8188", "-p 22:22"]
    assert body | {"env": None} == {
        "client_id": "me", "image": "vastai/comfy:latest", "env": None, "price": None, "disk": 50.0,
        "label": "stoker:p:i1", "extra": None, "onstart": "bash /start.sh", "image_login": None,
        "python_utf8": False, "lang_utf8": False, "use_jupyter_lab": False, "jupyter_dir": None, "force": False,
        "cancel_unavail": True, "template_hash_id": None, "user": None, "runtype": "ssh_direc ssh_proxy",
    }
    await p.aclose()


@pytest.mark.parametrize("status,body", [
    (400, {"success": False, "error": "no_such_ask", "msg": "Instance type by id 123 is not available."}),
    (404, {"success": False, "error": "no_such_ask", "msg": "Instance type by id 123 is not available."}),
    (410, {"success": False, "msg": "This offer is not available any more"}),
])
async def test_create_on_a_gone_offer_is_offer_unavailable(status: int, body: dict[str, Any]) -> None:
    p = make(Script(ok(body, status)))
    with pytest.raises(OfferUnavailable) as info:
        await p.create_instance(offer(), InstanceTemplate(), label="l", env={})
    assert info.value.status == status and not info.value.retryable and "not available" in str(info.value)
    await p.aclose()


async def test_create_refused_for_another_reason_is_a_plain_error_with_the_servers_msg() -> None:
    p = make(Script(ok({"success": False, "error": "insufficient_credit", "msg": "Your account lacks credit."}, 400)))
    with pytest.raises(ProviderError) as info:
        await p.create_instance(offer(), InstanceTemplate(), label="l", env={})
    assert type(info.value) is ProviderError and not info.value.retryable and info.value.status == 400
    assert "Your account lacks credit." in str(info.value)
    await p.aclose()


@pytest.mark.parametrize("reply", [httpx.Response(404, text="<html>Not Found</html>"),
                                   ok({"msg": "Session expired. Please log in again."}, 404)])
async def test_create_does_not_mistake_a_wrong_url_for_a_gone_offer(reply: httpx.Response) -> None:
    p = make(Script(reply))
    with pytest.raises(ProviderError) as info:
        await p.create_instance(offer(), InstanceTemplate(), label="l", env={})
    assert type(info.value) is ProviderError and info.value.status == 404
    await p.aclose()


async def test_create_is_not_resent_when_the_outcome_is_unknown() -> None:
    for reply in (ok({"msg": "Bad gateway"}, 502), httpx.ReadTimeout("timed out")):
        script = Script(reply, ok({"success": True, "new_contract": 1}))
        p = make(script)
        with pytest.raises(ProviderError) as info:
            await p.create_instance(offer(), InstanceTemplate(), label="l", env={})
        assert len(script.requests) == 1 and info.value.retryable
        await p.aclose()


async def test_create_is_resent_when_the_server_surely_did_nothing() -> None:
    script = Script(ok({"msg": "slow down"}, 429, **{"Retry-After": "1"}), httpx.ConnectError("refused"),
                    ok({"success": True, "new_contract": 42}))
    p = make(script)
    assert await p.create_instance(offer(), InstanceTemplate(), label="l", env={}) == "42"
    assert len(script.requests) == 3
    await p.aclose()


async def test_create_rejects_a_malformed_offer_id_without_a_request() -> None:
    script = Script(ok({}))
    p = make(script)
    with pytest.raises(ProviderError):
        await p.create_instance(offer(offer_id="../instances/5"), InstanceTemplate(), label="l", env={})
    assert script.requests == []
    await p.aclose()


async def test_list_follows_next_token_through_every_page() -> None:
    rows = [ROW | {"id": i} for i in range(1, 28)]
    script = Script(ok({"instances": rows[:25], "next_token": "tok1", "total_instances": 27}),
                    ok({"instances": rows[25:], "next_token": None, "total_instances": 27}))
    p = make(script)
    listed = await p.list_instances()
    assert [i.provider_id for i in listed] == [str(i) for i in range(1, 28)]
    first, second = script.requests
    assert first.method == "GET" and first.content == b""
    assert first.url.path == "/api/v1/instances/" and first.url.query.decode() == LIST_QUERY
    assert second.url.query.decode() == LIST_QUERY + "&after_token=tok1"
    await p.aclose()


async def test_rows_map_to_provider_instances() -> None:
    p = make(Script(ok({"instances": [ROW, ROW | {"id": 6, "ports": {}, "start_date": None, "label": None}],
                        "next_token": None})))
    a, b = await p.list_instances()
    assert (a.provider_id, a.host_id, a.machine_id, a.label) == ("5", "99", "1234", "pool-a")
    assert (a.actual_status, a.intended_status) == ("running", "running")
    assert a.status_msg == "success, running vastai/comfy_v1"  # whitespace-stripped like the client does
    assert (a.comfy_url, a.dph, a.start_date) == ("http://203.0.113.7:40002", 0.4123, 1763768000.0)
    assert a.gpu_name == "RTX 4090"
    assert (b.comfy_url, b.start_date, b.label) == (None, None, None)
    await p.aclose()


async def test_list_drops_destroyed_rows_and_refuses_malformed_ones() -> None:
    p = make(Script(ok({"instances": [ROW, ROW | {"id": 6, "actual_status": "destroyed"}], "next_token": None})))
    assert [i.provider_id for i in await p.list_instances()] == ["5"]
    await p.aclose()
    p = make(Script(ok({"instances": [ROW, {"id": 6, "dph_total": "lots"}], "next_token": None})))
    with pytest.raises(ProviderError):
        await p.list_instances()  # dropping the row would make a billing instance look gone
    await p.aclose()


async def test_show_and_its_gone_semantics() -> None:
    script = Script(ok({"instances": ROW}), ok({"instances": None}),
                    ok({"success": False, "error": "no_such_instance", "msg": "Instance 5 not found."}, 404),
                    ok({"instances": ROW | {"actual_status": "destroyed"}}))
    p = make(script)
    shown = await p.show_instance("5")
    assert shown is not None and shown.comfy_url == "http://203.0.113.7:40002"
    req = script.requests[0]
    assert (req.method, req.url.path, req.url.query.decode()) == ("GET", "/api/v0/instances/5/", "owner=me")
    assert await p.show_instance("5") is None
    assert await p.show_instance("5") is None
    assert await p.show_instance("5") is None
    await p.aclose()


@pytest.mark.parametrize("reply", [
    httpx.Response(404, text="<html>Not Found</html>"),
    ok({"msg": "Session expired. Please log in again."}, 404),
    ok({"msg": "API endpoint /api/v0/instances/5/ not found."}, 404),
    ok({"something": "else"}),
])
async def test_show_does_not_mistake_other_answers_for_gone(reply: httpx.Response) -> None:
    p = make(Script(reply))
    with pytest.raises(ProviderError):
        await p.show_instance("5")
    await p.aclose()


async def test_destroy_sends_delete_with_an_empty_body_and_tolerates_gone() -> None:
    script = Script(ok({"success": True}), ok({"success": False, "msg": "Instance 5 not found."}, 404))
    p = make(script)
    await p.destroy_instance("5")
    await p.destroy_instance("5")
    req = script.requests[0]
    assert (req.method, str(req.url), req.content) == ("DELETE", f"{BASE}/api/v0/instances/5/", b"{}")
    assert req.headers["Content-Type"] == "application/json"
    await p.aclose()


async def test_429_with_retry_after_is_waited_out_then_succeeds() -> None:
    t = FakeTime()
    script = Script(ok({"msg": "slow"}, 429, **{"Retry-After": "1.5"}),
                    ok({"msg": "slow"}, 429, **{"Retry-After": "2"}), ok({"offers": []}))
    p = make(script, t)
    assert await p.search_offers(OfferFilter()) == []
    assert len(script.requests) == 3
    assert 1.5 <= t.sleeps[0] <= 1.5 * 1.1 and 2.0 <= t.sleeps[1] <= 2.2
    await p.aclose()


async def test_retries_are_bounded() -> None:
    t = FakeTime()
    script = Script(ok({"msg": "upstream down"}, 503))
    p = make(script, t, retries=4)
    with pytest.raises(ProviderError) as info:
        await p.list_instances()
    assert len(script.requests) == 4 and len(t.sleeps) == 3
    assert info.value.status == 503 and info.value.retryable and "upstream down" in str(info.value)
    await p.aclose()


async def test_5xx_backs_off_exponentially_with_jitter() -> None:
    t = FakeTime()
    p = make(Script(ok({}, 502), ok({}, 504), ok({}, 502), ok({"instances": [], "next_token": None})), t, backoff=0.5)
    assert await p.list_instances() == []
    for delay, base in zip(t.sleeps, (0.5, 1.0, 2.0), strict=True):
        assert base / 2 <= delay <= base
    await p.aclose()


async def test_a_long_retry_after_gives_up_at_once() -> None:
    t = FakeTime()
    script = Script(ok({"msg": "slow down"}, 429, **{"Retry-After": "120"}), ok({"offers": []}))
    p = make(script, t)
    with pytest.raises(ProviderError) as info:
        await p.search_offers(OfferFilter())
    assert len(script.requests) == 1 and t.sleeps == []
    assert info.value.retryable and info.value.status == 429 and "120" in str(info.value)
    await p.aclose()


async def test_search_quota_is_not_retried() -> None:
    script = Script(ok({"error": "search_quota_exceeded", "msg": "Daily search quota exceeded."}, 429))
    p = make(script)
    with pytest.raises(ProviderError, match="Daily search quota exceeded"):
        await p.search_offers(OfferFilter())
    assert len(script.requests) == 1
    await p.aclose()


async def test_the_total_deadline_bounds_the_retries() -> None:
    t = FakeTime()
    script = Script(ok({"msg": "slow"}, 429, **{"Retry-After": "30"}))
    p = make(script, t, retries=10, deadline=70.0)
    with pytest.raises(ProviderError):
        await p.list_instances()
    assert len(script.requests) == 3 and t.now <= 70.0
    await p.aclose()


async def test_connection_errors_are_retried_then_reported_as_retryable() -> None:
    t = FakeTime()
    script = Script(httpx.ConnectError("refused"), ok({"instances": [], "next_token": None}))
    p = make(script, t)
    assert await p.list_instances() == []
    await p.aclose()
    script = Script(httpx.ReadTimeout("slow"))
    p = make(script, t, retries=3)
    with pytest.raises(ProviderError) as info:
        await p.destroy_instance("5")
    assert len(script.requests) == 3 and info.value.retryable and info.value.status is None
    await p.aclose()


async def test_non_retryable_errors_carry_the_servers_msg() -> None:
    script = Script(ok({"success": False, "error": "invalid_args", "msg": "limit must be <= 25"}, 400))
    p = make(script)
    with pytest.raises(ProviderError) as info:
        await p.list_instances()
    assert len(script.requests) == 1 and not info.value.retryable and info.value.status == 400
    assert str(info.value) == "Vast.ai list instances failed with error 400: limit must be <= 25"
    await p.aclose()
    p = make(Script(httpx.Response(401, text="nope")))
    with pytest.raises(ProviderError, match="401: Please log in or sign up"):
        await p.list_instances()
    await p.aclose()


async def test_a_non_json_success_is_an_error() -> None:
    p = make(Script(httpx.Response(200, text="<html>maintenance</html>")))
    with pytest.raises(ProviderError, match="not JSON"):
        await p.search_offers(OfferFilter())
    await p.aclose()


async def test_set_api_key_changes_the_header() -> None:
    script = Script(ok({"instances": None}))
    p = make(script)
    p.set_api_key("new-key-value")
    await p.show_instance("1")
    assert script.requests[-1].headers["Authorization"] == "Bearer new-key-value"
    p.set_api_key("")
    await p.show_instance("1")
    assert "Authorization" not in script.requests[-1].headers
    await p.aclose()


async def test_secrets_never_reach_logs_errors_or_repr(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("DEBUG")
    token = "hf_SECRETTOKEN1234567"

    def echo(request: httpx.Request) -> httpx.Response:  # a server that quotes what it was sent
        return ok({"msg": f"bad request {request.headers.get('Authorization')} {request.content.decode()}"}, 400)

    p = make(Script(ok({"msg": "busy"}, 429), echo))
    with pytest.raises(ProviderError) as info:
        await p.create_instance(offer(), InstanceTemplate(), label="l", env={"HF_TOKEN": token})
    errors = [str(info.value), repr(info.value), repr(p), str(vars(p))]
    p2 = make(Script(ok({"msg": "busy"}, 503), httpx.ConnectError(f"refused for {KEY}")), retries=2)
    with pytest.raises(ProviderError) as info2:
        await p2.list_instances()
    errors += [str(info2.value), repr(p2)]
    assert caplog.records  # the calls were logged at DEBUG, without the secrets
    for text in [caplog.text, *errors]:
        assert KEY not in text and token not in text
    assert "***" in str(info.value) and "api_key=set" in repr(p)
    await p.aclose()
    await p2.aclose()
