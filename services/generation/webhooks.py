"""Webhooks: a finished job's ``generation.completed`` / ``generation.failed``, signed, retried with backoff.

Signature: ``X-Stoker-Signature: sha256=<hex HMAC-SHA256(key, "<X-Stoker-Timestamp>." + body)>``
where key is the user's webhook secret (``cmd.gen.webhook_secret``; derived from the service's
master secret, so every worker agrees). ``X-Stoker-Delivery`` is stable across retries
(receivers dedupe on it). Each attempt is a ``WebhookAttempted`` event; retries are work-queue
naks with an exponential delay, so they survive a worker restart.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, Protocol
from urllib.parse import urlsplit

import httpx
import msgspec

from libs.events import codec

from . import domain as d
from .present import job_view
from .runner import Ack, Disposition, JobRunner, Nak

log = logging.getLogger("stoker.generation.webhooks")


class WebhookSettings(msgspec.Struct, frozen=True, kw_only=True):
    """Delivery policy."""

    max_attempts: int = 8
    backoff_s: float = 2.0  # first retry delay; doubles each attempt
    backoff_max_s: float = 3600.0
    timeout_s: float = 10.0
    allow_private: bool = False  # allow loopback/private/link-local targets (development)


def user_secret(master: bytes, user_id: str) -> str:
    """The key a user's webhooks are signed with."""
    return hmac.new(master, f"webhook:{user_id}".encode(), hashlib.sha256).hexdigest()


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The ``X-Stoker-Signature`` value."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"sha256={mac}"


def verify(secret: str, timestamp: str, body: bytes, signature: str, *, now: float | None = None,
           tolerance_s: float = 300.0) -> bool:
    """Check a received webhook (receivers: use this, or the same three lines in your language)."""
    try:
        ts = int(timestamp)
    except ValueError:
        return False
    if abs((now if now is not None else time.time()) - ts) > tolerance_s:
        return False
    return hmac.compare_digest(sign(secret, ts, body), signature)


def backoff(attempt: int, settings: WebhookSettings) -> float:
    """Delay after failed attempt ``attempt`` (1-based)."""
    return float(min(settings.backoff_max_s, settings.backoff_s * 2 ** (attempt - 1)))


def check_url(url: str, *, allow_private: bool) -> str:
    """A webhook URL we are willing to call; DomainError VALIDATION_FAILED says why not."""
    def bad(msg: str) -> d.DomainError:
        return d.DomainError(f"webhook_url: {msg}", "VALIDATION_FAILED")

    if len(url) > 2000:
        raise bad("longer than 2000 characters")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise bad("must be an http(s) URL with a host")
    if parts.username or parts.password:
        raise bad("must not contain credentials; the payload is signed instead")
    host = parts.hostname
    if not allow_private:
        if host == "localhost" or host.endswith(".localhost"):
            raise bad("points at this machine (set STOKER_WEBHOOK_ALLOW_PRIVATE=1 to allow)")
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            return url
        if ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_reserved or ip.is_multicast:
            raise bad("points at a private address (set STOKER_WEBHOOK_ALLOW_PRIVATE=1 to allow)")
    return url


class Sender(Protocol):
    """Sends one webhook request."""

    async def post(self, url: str, body: bytes, headers: dict[str, str], timeout: float) -> int:
        """POST and return the HTTP status (raises on network errors)."""
        ...


class HttpSender:
    """Webhook requests over httpx (no redirects followed)."""

    def __init__(self) -> None:
        self._client = httpx.AsyncClient(follow_redirects=False)

    async def post(self, url: str, body: bytes, headers: dict[str, str], timeout: float) -> int:
        """POST the body."""
        resp = await self._client.post(url, content=body, headers=headers, timeout=timeout)
        return resp.status_code

    async def aclose(self) -> None:
        """Close connections."""
        await self._client.aclose()


def event_name(job: d.Job) -> str:
    """The webhook event of a finished job."""
    return "generation.completed" if job.status == "completed" else "generation.failed"


def payload(job: d.Job, attempt: int) -> bytes:
    """The JSON body of a webhook: event, delivery id, attempt and the job."""
    view = msgspec.to_builtins(job_view(job))
    return codec.encode({"type": event_name(job), "delivery_id": f"{job.id}:{event_name(job)}",
                         "attempt": attempt, "job": view})


class WebhookDelivery:
    """Delivers one job's webhook per work-queue message; the queue redelivers after a failed attempt."""

    def __init__(self, runner: JobRunner, sender: Sender, secret_for: Callable[[str], str],
                 settings: WebhookSettings, clock: Callable[[], datetime]) -> None:
        self.runner, self.sender, self.secret_for = runner, sender, secret_for
        self.settings, self.clock = settings, clock

    async def deliver(self, job_id: str) -> Disposition:
        """Make the next attempt (if one is due) and say when to come back."""
        job = await self.runner.load(job_id)
        if not job.webhook_pending or job.request is None or not job.request.webhook_url:
            return Ack()
        now = self.clock()
        if job.webhook_next_at is not None and job.webhook_next_at > now + timedelta(seconds=0.05):
            return Nak((job.webhook_next_at - now).total_seconds())  # redelivered early (a worker restarted)
        attempt = job.webhook_attempts + 1
        url = job.request.webhook_url
        body = payload(job, attempt)
        ts = int(time.time())
        headers = {"content-type": "application/json", "user-agent": "stoker-webhooks/1",
                   "x-stoker-event": event_name(job), "x-stoker-delivery": f"{job.id}:{event_name(job)}",
                   "x-stoker-attempt": str(attempt), "x-stoker-timestamp": str(ts),
                   "x-stoker-signature": sign(self.secret_for(job.user_id), ts, body)}
        status, error = 0, ""
        try:
            status = await self.sender.post(url, body, headers, self.settings.timeout_s)
            if not 200 <= status < 300:
                error = f"HTTP {status}"
        except (httpx.HTTPError, OSError) as exc:
            error = f"{type(exc).__name__}: {exc}".strip()[:300]
        delivered = not error
        delay = backoff(attempt, self.settings)
        job = await self.runner.decide(job, d.RecordWebhook(
            attempt=attempt, url=url, event=event_name(job), delivered=delivered, status=status, error=error,
            max_attempts=self.settings.max_attempts, next_attempt_at=self.clock() + timedelta(seconds=delay)))
        if not job.webhook_pending:
            if job.webhook_abandoned:
                log.warning("webhook of job %s abandoned after %d attempts: %s", job.id, attempt, error)
            return Ack()
        log.info("webhook of job %s attempt %d failed (%s); retry in %.1fs", job.id, attempt, error, delay)
        return Nak(delay)


def describe_headers() -> dict[str, Any]:
    """The webhook headers, for documentation and the gateway."""
    return {"X-Stoker-Event": "generation.completed | generation.failed",
            "X-Stoker-Delivery": "<job id>:<event>, the same for every attempt",
            "X-Stoker-Attempt": "1, 2, ...", "X-Stoker-Timestamp": "unix seconds",
            "X-Stoker-Signature": "sha256=<hex HMAC-SHA256(secret, timestamp + '.' + body)>"}
