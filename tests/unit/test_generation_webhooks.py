"""Webhooks: signatures, backoff, URL checks, and one event per delivery attempt."""

import msgspec
import pytest

from libs.events import NEW, Metadata
from libs.events import generation as ev
from services.generation import domain as d
from services.generation.fakes import FakeClock, FakeSender, MemoryEventStore
from services.generation.runner import (
    Ack,
    Deps,
    JobRunner,
    Nak,
    RunnerSettings,
    Signal,
    job_aggregate,
)
from services.generation.webhooks import (
    WebhookDelivery,
    WebhookSettings,
    backoff,
    check_url,
    sign,
    user_secret,
    verify,
)

pytestmark = pytest.mark.timeout(10)


def test_signature_round_trip_and_tamper_detection() -> None:
    key = user_secret(b"master", "u1")
    assert key != user_secret(b"master", "u2") and len(key) == 64
    sig = sign(key, 1700000000, b'{"a":1}')
    assert sig.startswith("sha256=")
    assert verify(key, "1700000000", b'{"a":1}', sig, now=1700000010)
    assert not verify(key, "1700000000", b'{"a":2}', sig, now=1700000010)
    assert not verify(key, "1700000000", b'{"a":1}', sig, now=1700009999)  # too old: replay
    assert not verify(user_secret(b"master", "u2"), "1700000000", b'{"a":1}', sig, now=1700000010)


def test_backoff_doubles_up_to_the_cap_and_at_least_five_attempts_are_made() -> None:
    s = WebhookSettings(backoff_s=2.0, backoff_max_s=20.0)
    assert [backoff(n, s) for n in range(1, 6)] == [2.0, 4.0, 8.0, 16.0, 20.0]
    assert WebhookSettings().max_attempts >= 5


@pytest.mark.parametrize("url", ["ftp://x/y", "http://", "https://user:pw@example.com/h",
                                 "http://127.0.0.1:9/h", "http://10.0.0.8/h", "http://169.254.169.254/latest",
                                 "http://localhost:8080/h"])
def test_webhook_urls_that_are_refused(url: str) -> None:
    with pytest.raises(d.DomainError) as err:
        check_url(url, allow_private=False)
    assert err.value.code == "VALIDATION_FAILED"


def test_private_targets_are_allowed_when_configured() -> None:
    assert check_url("http://127.0.0.1:9/h", allow_private=True)
    assert check_url("https://hooks.example.com/x", allow_private=False)


async def finished_job(store: MemoryEventStore, runner: JobRunner) -> d.Job:
    request = ev.GenerationRequested(user_id="u1", prompt={}, webhook_url="https://example.com/h")
    await store.append(job_aggregate("j1"), [request], NEW, Metadata(actor="t"))
    job = await runner.load("j1")
    job = await runner.decide(job, d.Claim(instance_id="i", lease_id="l", base_url="b", prompt_id="p",
                                           client_id="c"))
    return await runner.decide(job, d.Complete(prompt_id="p", outputs=(), at=FakeClock()()))


async def test_each_attempt_is_an_event_until_one_is_delivered_signed() -> None:
    store = MemoryEventStore()
    runner = JobRunner(Deps(store=store, pool=None, hosts=None, objects=None, publish=None,  # type: ignore[arg-type]
                            pool_view=lambda: None, waiting_jobs=lambda: 0, enqueue_webhook=None,  # type: ignore
                            clock=FakeClock(), pool_changed=Signal()), RunnerSettings())
    sender = FakeSender([503, 500])
    delivery = WebhookDelivery(runner, sender, lambda user: user_secret(b"m", user),
                               WebhookSettings(backoff_s=1.0, max_attempts=5), FakeClock(step=10))
    await finished_job(store, runner)
    assert await delivery.deliver("j1") == Nak(1.0)
    assert await delivery.deliver("j1") == Nak(2.0)
    assert await delivery.deliver("j1") == Ack()
    assert await delivery.deliver("j1") == Ack()  # a redelivery after success sends nothing
    attempts = [r.event for r in await store.load(job_aggregate("j1")) if isinstance(r.event, ev.WebhookAttempted)]
    failed = "failed: the receiver did not answer with a 2xx status"  # the status is in the event, not the text
    assert [(a.attempt, a.delivered, a.status, a.error) for a in attempts] == [
        (1, False, 503, failed), (2, False, 500, failed), (3, True, 200, "")]
    assert len(sender.sent) == 3
    _, body, headers = sender.sent[-1]
    assert verify(user_secret(b"m", "u1"), headers["x-stoker-timestamp"], body, headers["x-stoker-signature"])
    payload = msgspec.json.decode(body)
    assert payload["type"] == "generation.completed" and payload["job"]["id"] == "j1"
    assert headers["x-stoker-delivery"] == "j1:generation.completed" and headers["x-stoker-attempt"] == "3"


async def test_the_webhook_is_abandoned_after_the_last_attempt() -> None:
    store = MemoryEventStore()
    runner = JobRunner(Deps(store=store, pool=None, hosts=None, objects=None, publish=None,  # type: ignore[arg-type]
                            pool_view=lambda: None, waiting_jobs=lambda: 0, enqueue_webhook=None,  # type: ignore
                            clock=FakeClock(), pool_changed=Signal()), RunnerSettings())
    delivery = WebhookDelivery(runner, FakeSender([500] * 9), lambda user: "k",
                               WebhookSettings(backoff_s=1.0, max_attempts=5), FakeClock(step=100))
    await finished_job(store, runner)
    results = [await delivery.deliver("j1") for _ in range(5)]
    assert results[:4] == [Nak(1.0), Nak(2.0), Nak(4.0), Nak(8.0)] and results[4] == Ack()
    job = await runner.load("j1")
    assert job.webhook_abandoned and job.webhook_attempts == 5
