"""Webhook targets (issue 12 item 3): every address is checked when the connection is made; errors say only
"refused" or "failed"."""

import socket

import pytest
from aiohttp import web

from libs.events import NEW, Metadata
from libs.events import generation as ev
from services.generation import domain as d
from services.generation.fakes import FakeClock, MemoryEventStore
from services.generation.runner import Deps, JobRunner, RunnerSettings, Signal, job_aggregate
from services.generation.webhooks import HttpSender, WebhookDelivery, WebhookRefused, WebhookSettings, check_url

pytestmark = pytest.mark.timeout(20)


@pytest.mark.parametrize("url", [
    "http://2130706433/h", "http://0x7f000001/h", "http://127.1/h", "http://0/h", "http://0177.0.0.1/h",
    "http://127.0.0.1./h", "http://[::1]/h", "http://[::ffff:127.0.0.1]/h", "http://[::ffff:a9fe:a9fe]/h",
    "http://[64:ff9b::a9fe:a9fe]/h", "http://[2002:7f00:1::]/h", "http://[fd00:ec2::254]/h", "http://[fe80::1]/h",
    "http://100.64.0.1/h", "http://169.254.169.254/latest/meta-data", "http://192.168.1.1/h", "http://172.16.0.1/h",
    "http://0.0.0.0/h", "http://224.0.0.1/h", "http://255.255.255.255/h", "http://localhost./h",
    "http://foo.localhost/h", "http://metadata.google.internal/computeMetadata/v1/",
])
def test_inward_addresses_in_any_spelling_are_refused(url: str) -> None:
    with pytest.raises(d.DomainError) as err:
        check_url(url, allow_private=False)
    assert err.value.code == "VALIDATION_FAILED"


@pytest.mark.parametrize("url", ["https://hooks.example.com/x", "http://8.8.8.8/h", "http://[2001:4860::8888]/h"])
def test_public_targets_pass_the_check(url: str) -> None:
    assert check_url(url, allow_private=False) == url


class FakeDns:
    """A DNS that answers every name with one address (a rebinding attacker's DNS, say)."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.asked: list[str] = []

    async def resolve(self, host: str, port: int = 0, family: int = socket.AF_INET) -> list[dict]:
        self.asked.append(host)
        return [{"hostname": host, "host": self.address, "port": port, "family": socket.AF_INET, "proto": 0,
                 "flags": socket.AI_NUMERICHOST}]

    async def close(self) -> None:
        pass


@pytest.fixture
async def receiver():
    hits: list[bytes] = []

    async def hook(request: web.Request) -> web.Response:
        hits.append(await request.read())
        return web.Response(status=503, text="internal service says no")

    app = web.Application()
    app.router.add_post("/h", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    yield site._server.sockets[0].getsockname()[1], hits  # type: ignore[union-attr]
    await runner.cleanup()


async def test_a_name_that_resolves_inward_is_refused_at_connect_time(receiver) -> None:
    port, hits = receiver
    url = f"http://rebind.example.com:{port}/h"
    assert check_url(url, allow_private=False)  # a public-looking name passes the submit-time check
    dns = FakeDns("127.0.0.1")
    sender = HttpSender(allow_private=False, resolver=dns)
    try:
        with pytest.raises(WebhookRefused):
            await sender.post(url, b"{}", {}, 5.0)
        with pytest.raises(WebhookRefused):  # a literal spelled oddly is refused before any DNS
            await sender.post(f"http://2130706433:{port}/h", b"{}", {}, 5.0)
    finally:
        await sender.aclose()
    assert dns.asked == ["rebind.example.com"] and hits == []
    dev = HttpSender(allow_private=True, resolver=FakeDns("127.0.0.1"))
    try:
        assert await dev.post(url, b"{}", {}, 5.0) == 503  # the same path delivers in development mode
    finally:
        await dev.aclose()
    assert hits == [b"{}"]


class OneAnswer:
    def __init__(self, outcome) -> None:
        self.outcome = outcome

    async def post(self, url: str, body: bytes, headers: dict[str, str], timeout: float) -> int:
        if isinstance(self.outcome, BaseException):
            raise self.outcome
        return self.outcome


@pytest.mark.parametrize("outcome, error", [
    (WebhookRefused("10.0.0.8 is private"), "refused"), (503, "failed"), (404, "failed"),
    (ConnectionRefusedError("[Errno 111] Connect call failed ('10.1.2.3', 8080)"), "failed"),
    (TimeoutError(), "failed"),
])
async def test_the_user_sees_refused_or_failed_and_nothing_about_the_target(outcome, error: str) -> None:
    store = MemoryEventStore()
    runner = JobRunner(Deps(store=store, pool=None, hosts=None, objects=None, publish=None,  # type: ignore[arg-type]
                            pool_view=lambda: None, waiting_jobs=lambda: 0, enqueue_webhook=None,  # type: ignore
                            clock=FakeClock(), pool_changed=Signal()), RunnerSettings())
    request = ev.GenerationRequested(user_id="u1", prompt={}, webhook_url="https://example.com/h")
    await store.append(job_aggregate("j1"), [request], NEW, Metadata(actor="t"))
    job = await runner.load("j1")
    job = await runner.decide(job, d.Claim(instance_id="i", lease_id="l", base_url="b", prompt_id="p", client_id="c"))
    await runner.decide(job, d.Complete(prompt_id="p", outputs=(), at=FakeClock()()))
    delivery = WebhookDelivery(runner, OneAnswer(outcome), lambda user: "k", WebhookSettings(), FakeClock(step=10))
    await delivery.deliver("j1")
    last = (await runner.load("j1")).webhook_last_error
    assert last.split(":")[0] == error
    for leak in ("503", "404", "10.", "111", "Errno", "private"):
        assert leak not in last
