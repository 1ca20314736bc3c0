"""Webhooks: a finished job's ``generation.completed`` / ``generation.failed``, signed, retried with backoff.

Signature: ``X-Stoker-Signature: sha256=<hex HMAC-SHA256(key, "<X-Stoker-Timestamp>." + body)>``
where key is the user's webhook secret (``cmd.gen.webhook_secret``; derived from the service's
master secret, so every worker agrees). ``X-Stoker-Delivery`` is stable across retries
(receivers dedupe on it). Each attempt is a ``WebhookAttempted`` event; retries are work-queue
naks with an exponential delay, so they survive a worker restart.

Targets (outside development mode) must be public: a URL naming an inward address in any spelling
(``127.1``, ``2130706433``, ``[::ffff:127.0.0.1]``) is refused when the job is submitted, and every
address a name resolves to is checked again when the connection is made, so DNS rebinding cannot
reach an internal service. The user only ever sees "refused" or "failed" (never a status or an
error of whatever answered).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import logging
import socket
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, Protocol
from urllib.parse import urlsplit

import aiohttp
import msgspec
from aiohttp.abc import AbstractResolver, ResolveResult

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


NAT64 = ipaddress.ip_network("64:ff9b::/96")
INWARD_NAMES = ("localhost", "localhost.", "internal", "internal.")  # names that are never public


class WebhookRefused(Exception):
    """The target is not a public address (checked when connecting)."""


def public_ip(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """True for an address on the public internet (not loopback, private, link-local, CGNAT, metadata, ...)."""
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = ip.ipv4_mapped or ip.sixtofour or (
            ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF) if ip in NAT64 else None)
        if embedded is not None:
            return public_ip(embedded)
        if ip.teredo:
            return public_ip(ip.teredo[1])
    return ip.is_global and not ip.is_multicast


def literal_ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address a host names literally, in any spelling resolvers accept (``127.1``, ``0x7f000001``, ...)."""
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        pass
    try:
        return ipaddress.IPv4Address(socket.inet_aton(host.rstrip(".")))  # the C library's legacy forms
    except (OSError, ValueError):
        return None


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
    try:
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        raise bad("has an invalid port") from None
    host = parts.hostname.lower()
    if not allow_private:
        if any(host == n or host.endswith("." + n) for n in INWARD_NAMES):
            raise bad("points at this machine or an internal name (set STOKER_WEBHOOK_ALLOW_PRIVATE=1 to allow)")
        ip = literal_ip(host)
        if ip is not None and not public_ip(ip):
            raise bad("points at a private address (set STOKER_WEBHOOK_ALLOW_PRIVATE=1 to allow)")
    return url


class PublicOnlyResolver(AbstractResolver):
    """Resolves a name, then refuses the connection if any address it got is not public (no DNS rebinding)."""

    def __init__(self, inner: AbstractResolver | None = None) -> None:
        self._inner = inner  # the system resolver unless given (made on first use, inside the loop)

    async def resolve(self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
                      ) -> list[ResolveResult]:
        """Every address of ``host``, all of them public, or WebhookRefused."""
        ip = literal_ip(host)
        if ip is not None:  # a numeric spelling the connector did not recognise as an address
            if not public_ip(ip):
                raise WebhookRefused(f"{host} is not a public address")
            return [ResolveResult(hostname=host, host=str(ip), port=port, family=socket.AF_INET, proto=0,
                                  flags=socket.AI_NUMERICHOST)]
        if self._inner is None:
            self._inner = aiohttp.ThreadedResolver()
        results = await self._inner.resolve(host, port, family)
        for r in results:
            if not public_ip(ipaddress.ip_address(r["host"].split("%", 1)[0])):
                raise WebhookRefused(f"{host} resolves to {r['host']}, which is not a public address")
        return results

    async def close(self) -> None:
        """Close the inner resolver."""
        if self._inner is not None:
            await self._inner.close()


class Sender(Protocol):
    """Sends one webhook request."""

    async def post(self, url: str, body: bytes, headers: dict[str, str], timeout: float) -> int:
        """POST and return the HTTP status (raises on network errors)."""
        ...


class HttpSender:
    """Webhook requests (no redirects, no proxies from the environment); outside development mode every
    address is checked as the connection is made."""

    def __init__(self, *, allow_private: bool = False, resolver: Any = None) -> None:
        self.allow_private = allow_private
        self._resolver = resolver if allow_private else PublicOnlyResolver(resolver)
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:  # created on first use, inside the running loop
            connector = aiohttp.TCPConnector(resolver=self._resolver, use_dns_cache=False, limit=100)
            self._session = aiohttp.ClientSession(connector=connector, trust_env=False)
        return self._session

    async def post(self, url: str, body: bytes, headers: dict[str, str], timeout: float) -> int:
        """POST the body; WebhookRefused when the target is not public."""
        try:
            check_url(url, allow_private=self.allow_private)  # literal addresses never reach the resolver
        except d.DomainError as exc:
            raise WebhookRefused(str(exc)) from None
        async with self._client().post(url, data=body, headers=headers, allow_redirects=False,
                                       timeout=aiohttp.ClientTimeout(total=timeout)) as resp:
            return resp.status

    async def aclose(self) -> None:
        """Close connections."""
        if self._session is not None:
            await self._session.close()
        if self._resolver is not None:
            await self._resolver.close()


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
        status, error, detail = 0, "", ""
        try:
            status = await self.sender.post(url, body, headers, self.settings.timeout_s)
            if not 200 <= status < 300:
                error, detail = "failed: the receiver did not answer with a 2xx status", f"HTTP {status}"
        except WebhookRefused as exc:
            error, detail = "refused: the webhook URL does not lead to a public address", str(exc)
        except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as exc:
            error, detail = "failed: no answer from the receiver", f"{type(exc).__name__}: {exc}".strip()[:300]
        delivered = not error
        delay = backoff(attempt, self.settings)
        job = await self.runner.decide(job, d.RecordWebhook(
            attempt=attempt, url=url, event=event_name(job), delivered=delivered, status=status, error=error,
            max_attempts=self.settings.max_attempts, next_attempt_at=self.clock() + timedelta(seconds=delay)))
        if not job.webhook_pending:
            if job.webhook_abandoned:
                log.warning("webhook of job %s abandoned after %d attempts: %s", job.id, attempt, detail)
            return Ack()
        log.info("webhook of job %s attempt %d failed (%s); retry in %.1fs", job.id, attempt, detail, delay)
        return Nak(delay)


def describe_headers() -> dict[str, Any]:
    """The webhook headers, for documentation and the gateway."""
    return {"X-Stoker-Event": "generation.completed | generation.failed",
            "X-Stoker-Delivery": "<job id>:<event>, the same for every attempt",
            "X-Stoker-Attempt": "1, 2, ...", "X-Stoker-Timestamp": "unix seconds",
            "X-Stoker-Signature": "sha256=<hex HMAC-SHA256(secret, timestamp + '.' + body)>"}
