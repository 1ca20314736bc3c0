"""The audit HTTP API, for the gateway to mount behind admin authentication.

    app.add_subapp("/api/audit", create_api(AuditConfig.from_mapping(env)))

``GET /verify[?deep=1]`` runs a verification and returns its report (200 when it verifies, 409
when it names a bad record). ``GET /records?since&until&actor&type&aggregate_type&aggregate_id
&after&before&limit&order=asc|desc`` returns ``{"records": [...], "next": <seq or null>}``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import asyncpg
import nats
from aiohttp import web
from nats.aio.client import Client as NatsClient

from libs.events import codec
from services.audit import repository
from services.audit.check import verify_audit
from services.audit.config import AuditConfig

CONFIG = web.AppKey("audit_config", AuditConfig)
POOL = web.AppKey("audit_pool", asyncpg.Pool)
NATS = web.AppKey("audit_nats", NatsClient)
_verifying = web.AppKey("audit_verifying", asyncio.Lock)


def record_json(row: Any) -> dict[str, Any]:
    """A record as JSON-ready builtins (payload parsed, hash as hex)."""
    out = dict(row)
    out["payload"] = codec.loads(out["payload"].encode())
    for name in ("occurred_at", "recorded_at"):
        out[name] = out[name].isoformat()
    if "hash" in out:
        out["hash"] = bytes(out["hash"]).hex()
    return out


def _error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}}, status=status)


async def _resources(app: web.Application) -> AsyncIterator[None]:
    cfg = app[CONFIG]
    app[POOL] = await repository.create_pool(cfg.database_url, cfg.app_role or None, max_size=2)
    app[NATS] = await nats.connect(cfg.nats_url, name="stoker-audit-api", max_reconnect_attempts=-1)
    app[_verifying] = asyncio.Lock()
    yield
    await app[NATS].close()
    await app[POOL].close()


async def verify_handler(request: web.Request) -> web.Response:
    """Verify the whole chain (one verification at a time)."""
    app = request.app
    cfg = app[CONFIG]
    deep = request.query.get("deep", "") in ("1", "true", "yes")
    async with app[_verifying], app[POOL].acquire() as conn:
        report = await verify_audit(conn, app[NATS].jetstream(timeout=10), chain=cfg.chain, keyring=cfg.keyring,
                                    streams=cfg.streams, deep=deep, dsn=cfg.database_url)
    return web.json_response(report.to_builtins(), status=200 if report.ok else 409)


def _parse(request: web.Request) -> repository.Query:
    q = request.query

    def when(name: str) -> datetime | None:
        return datetime.fromisoformat(q[name]) if q.get(name) else None

    def number(name: str) -> int | None:
        return int(q[name]) if q.get(name) else None

    order = q.get("order", "asc")
    if order not in ("asc", "desc"):
        raise ValueError("order must be asc or desc")
    return repository.Query(since=when("since"), until=when("until"), actor=q.get("actor"), type=q.get("type"),
                            aggregate_type=q.get("aggregate_type"), aggregate_id=q.get("aggregate_id"),
                            after=number("after"), before=number("before"), limit=number("limit") or 100,
                            descending=order == "desc")


async def records_handler(request: web.Request) -> web.Response:
    """One page of records (keyset pagination: pass ``next`` back as ``after``, or ``before`` when desc)."""
    try:
        q = _parse(request)
    except ValueError as exc:
        return _error(400, "BAD_REQUEST", str(exc))
    async with request.app[POOL].acquire() as conn:
        rows = await repository.query(conn, q)
    records = [record_json(r) for r in rows]
    more = len(rows) == max(1, min(q.limit, 1000))
    return web.json_response({"records": records, "next": records[-1]["seq"] if records and more else None},
                             dumps=lambda v: codec.encode(v).decode())


def create_api(config: AuditConfig) -> web.Application:
    """The audit sub-application (verify and records), with its own pool and NATS connection."""
    app = web.Application()
    app[CONFIG] = config
    app.cleanup_ctx.append(_resources)
    app.router.add_get("/verify", verify_handler)
    app.router.add_get("/records", records_handler)
    return app
