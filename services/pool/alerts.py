"""Admin alerts: which pool events page a person (pure), and the webhook that tells them.

Two formats: ``slack`` (``{"text": …}``, what Slack and Mattermost incoming webhooks take) and
``generic`` (a JSON object signed with HMAC-SHA256 in ``X-Stoker-Signature: sha256=<hex>`` over
``<timestamp>.<body>``, timestamp in ``X-Stoker-Timestamp``; ntfy takes it as a message body).
Every attempt is an ``AlertAttempted`` event on the alert's own aggregate (the alerted event's id),
so a second replica or a restart never alerts twice about the same event.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import time
from collections.abc import Mapping
from typing import Any, NamedTuple

import httpx

from libs.events import NEW, Aggregate, ConcurrencyError, Metadata, Position, Recorded, codec, subjects
from libs.events import pool as ev
from libs.events.store import EventStore

log = logging.getLogger(__name__)
ATTEMPTS = 3


class Alert(NamedTuple):
    """What to tell an admin."""

    kind: str
    message: str
    instance_id: str = ""


def alert_of(rec: Recorded) -> Alert | None:
    """The alert a recorded pool event calls for, or None."""
    event, env = rec.envelope.event, rec.envelope
    iid = env.aggregate_id if env.aggregate_type == ev.INSTANCE else ""
    match event:
        case ev.ExtractionFailed():
            return Alert("extraction_failed", f"instance {iid} failed to start ({event.kind}) on host "
                         f"{event.host_id}: {event.status_msg[:300]}", iid)
        case ev.ProbeFailed():
            return Alert("probe_timeout", f"instance {iid} never became ready: {event.reason}", iid)
        case ev.SafeModeChanged(enabled=True) if event.reason.startswith("budget"):
            return Alert("spend_cap", f"spend cap reached, safe mode is on: {event.detail or event.reason}")
        case ev.SafeModeChanged(enabled=True):
            return Alert("safe_mode", f"safe mode turned on ({event.reason}): every instance is being terminated")
        case ev.ProblemRaised(code="provider_auth"):
            return Alert("provider_auth", event.message[:500])
        case ev.Terminated(reason="provider_lost"):
            return Alert("node_lost", f"instance {iid} ({event.provider_id}) vanished at the provider", iid)
    return None


class WebhookConfig(NamedTuple):
    """Where alerts go; ``secret`` signs the generic format."""

    url: str
    format: str  # slack | generic
    secret: str = ""

    def __repr__(self) -> str:
        return f"WebhookConfig(format={self.format!r}, signed={bool(self.secret)})"


def webhook_config(env: Mapping[str, str]) -> WebhookConfig | None:
    """From STOKER_ALERT_WEBHOOK_URL / _FORMAT / _SECRET; None when no URL is set."""
    url = env.get("STOKER_ALERT_WEBHOOK_URL", "").strip()
    if not url:
        return None
    fmt = env.get("STOKER_ALERT_WEBHOOK_FORMAT", "").strip().lower() or (
        "slack" if "hooks.slack.com" in url else "generic")
    if fmt not in ("slack", "generic"):
        raise ValueError("STOKER_ALERT_WEBHOOK_FORMAT must be slack or generic")
    return WebhookConfig(url, fmt, env.get("STOKER_ALERT_WEBHOOK_SECRET", "").strip())


def payload(cfg: WebhookConfig, pool_id: str, alert: Alert, rec: Recorded, now: float) -> tuple[bytes, dict[str, str]]:
    """The body and headers of one webhook call."""
    if cfg.format == "slack":
        body = codec.encode({"text": f":rotating_light: Stoker pool {pool_id}: {alert.message}"})
        return body, {"content-type": "application/json"}
    data: dict[str, Any] = {"kind": alert.kind, "pool_id": pool_id, "instance_id": alert.instance_id or None,
                            "message": alert.message, "event_id": rec.envelope.id,
                            "occurred_at": rec.envelope.occurred_at.isoformat()}
    body = codec.encode(data)
    stamp = str(int(now))
    headers = {"content-type": "application/json", "X-Stoker-Timestamp": stamp, "Title": f"Stoker: {alert.kind}"}
    if cfg.secret:
        mac = hmac.new(cfg.secret.encode(), stamp.encode() + b"." + body, hashlib.sha256).hexdigest()
        headers["X-Stoker-Signature"] = f"sha256={mac}"
    return body, headers


class AlertSender:
    """Calls the webhook for alerting events, recording each attempt as an event."""

    def __init__(self, store: EventStore, cfg: WebhookConfig, pool_id: str, *, backoff: float = 1.0,
                 client: httpx.AsyncClient | None = None) -> None:
        self._store, self._cfg, self._pool_id, self._backoff = store, cfg, pool_id, backoff
        self._client = client or httpx.AsyncClient(timeout=5.0, follow_redirects=False)
        self._tasks: set[asyncio.Task[None]] = set()

    def on_event(self, rec: Recorded) -> None:
        """Start delivering an alert for ``rec`` if it calls for one (returns at once)."""
        alert = alert_of(rec)
        if alert is None:
            return
        task = asyncio.get_running_loop().create_task(self._deliver(alert, rec))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _deliver(self, alert: Alert, rec: Recorded) -> None:
        agg = Aggregate(subjects.POOL, ev.ALERT, rec.envelope.id)
        position: Position = NEW
        meta = Metadata(actor="pool", causation_id=rec.envelope.id,
                        correlation_id=rec.envelope.correlation_id)
        for attempt in range(1, ATTEMPTS + 1):
            body, headers = payload(self._cfg, self._pool_id, alert, rec, time.time())
            status, error = None, ""
            try:
                resp = await self._client.post(self._cfg.url, content=body, headers=headers)
                status = resp.status_code
            except httpx.HTTPError as exc:
                error = type(exc).__name__
            ok = status is not None and 200 <= status < 300
            event = ev.AlertAttempted(pool_id=self._pool_id, kind=alert.kind, instance_id=alert.instance_id,
                                      attempt=attempt, ok=ok, status=status, error=error)
            try:
                recorded = await self._store.append(agg, [event], position, meta)
            except ConcurrencyError:
                return  # another replica (or an earlier run) is alerting about this event
            position = Position(recorded[-1].envelope.aggregate_version, recorded[-1].seq)
            if ok:
                return
            log.warning("alert webhook for %s failed (attempt %d/%d): %s", alert.kind, attempt, ATTEMPTS,
                        status or error)
            await asyncio.sleep(self._backoff * attempt)

    async def aclose(self) -> None:
        """Finish what is in flight (bounded), then close."""
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=5)
        for task in self._tasks:
            task.cancel()
        await self._client.aclose()
