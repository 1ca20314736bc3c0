"""Probes, metrics and the API's own documentation."""

from __future__ import annotations

import logging
from typing import Any

import asyncpg
from aiohttp import web

from services.gateway import auth, openapi
from services.gateway.dependencies import bounded
from services.gateway.errors import ApiError, error_response
from services.gateway.resources import (
    CLOCK,
    CONFIG,
    DATABASE,
    HUB,
    METRICS,
    NATS,
    OPENAPI_DOC,
    PG_POOL,
    POOL_READS,
)
from services.gateway.routing import Call, Operation, json_response
from services.gateway.schemas import Status
from services.pool.view import spend_rate, spend_today

log = logging.getLogger("stoker.gateway")
PROBE_TIMEOUT = 2.0
INDEX_HTML = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Stoker</title></head>
<body><h1>Stoker is running</h1><p>The web UI is coming. Health: <a href="/readyz">/readyz</a>,
API: <a href="/api/docs">/api/docs</a></p></body></html>
"""


async def healthz(call: Call) -> Any:
    """Liveness: the process answers."""
    return {"status": "ok"}


async def _postgres_ok(pool: asyncpg.Pool, timeout: float) -> bool:
    try:
        return bool(await bounded(pool.fetchval("SELECT 1"), timeout) == 1)
    except Exception as exc:  # noqa: BLE001 -- any failure means not ready; the probe must not raise
        log.debug("postgres probe failed: %r", exc)
        return False


async def readyz(call: Call) -> Any:
    """Readiness: NATS connected, PostgreSQL answers SELECT 1, the gateway's tables and pool view are ready;
    ``details`` names the state of each dependency."""
    app = call.app
    problems = []
    state = {"nats": "ok", "postgres": "ok", "pool_view": "ok"}
    if not app[NATS].is_connected:
        problems.append("NATS is not connected")
        state["nats"] = "not connected"
    db = app[DATABASE]
    postgres_ok = await _postgres_ok(app[PG_POOL], min(PROBE_TIMEOUT, app[CONFIG].dependency_timeout_s))
    db.mark(postgres_ok)
    if not postgres_ok:
        problems.append("PostgreSQL does not answer")
        state["postgres"] = "not answering"
    elif not db.ready:
        problems.append("the gateway's tables are not migrated yet")
        state["postgres"] = "not migrated"
    if not app[POOL_READS].caught_up:
        problems.append("the pool view is still catching up")
        state["pool_view"] = "catching up"
    if problems:
        return error_response(503, "NOT_READY", "; ".join(problems), details=state)
    return {"status": "ready"}


def _gauges(app: web.Application) -> list[tuple[str, str, str, dict[str, str], float]]:
    reads = app[POOL_READS]
    view = reads.view
    counts: dict[str, int] = {s: 0 for s in ("renting", "loading", "ready", "claimed", "terminating")}
    for inst in view.instances.values():
        counts[inst.phase] = counts.get(inst.phase, 0) + 1
    out = [("stoker_pool_instances", "gauge", "Pool instances by state.", {"state": s}, float(n))
           for s, n in sorted(counts.items())]
    out += [
        ("stoker_pool_spend_rate_dollars_per_hour", "gauge", "Current pool spend rate.", {}, spend_rate(view)),
        ("stoker_pool_spend_today_dollars", "gauge", "Spend since 00:00 UTC.", {}, spend_today(view, app[CLOCK]())),
        ("stoker_pool_safe_mode", "gauge", "1 while the pool is in safe mode.", {}, float(view.safe_mode)),
        ("stoker_pool_view_seq", "gauge", "Pool stream sequence the gateway's view includes.", {},
         float(reads.projector.seq)),
        ("stoker_live_clients", "gauge", "Connected Server-Sent Events clients.", {}, float(len(app[HUB].clients))),
    ]
    return out


async def metrics(call: Call) -> Any:
    """Prometheus text: from this machine without credentials, otherwise admin only."""
    who = call.principal
    if not auth.is_local(call.request) and not (who is not None and who.is_admin):
        if who is None:
            raise ApiError(401, "AUTH_REQUIRED", "metrics need the admin key when scraped from another machine")
        raise ApiError(403, "FORBIDDEN", "metrics need the admin role")
    text = call.app[METRICS].render(_gauges(call.app))
    return web.Response(text=text, content_type="text/plain", charset="utf-8",
                        headers={"X-Content-Type-Options": "nosniff"})


async def openapi_json(call: Call) -> Any:
    """The OpenAPI 3.1 document."""
    return json_response(call.app[OPENAPI_DOC])


async def docs(call: Call) -> Any:
    """A plain page listing every operation."""
    return web.Response(text=openapi.docs_page(call.app[OPENAPI_DOC]), content_type="text/html")


async def docs_css(request: web.Request) -> web.Response:
    """The docs page's stylesheet (served from this origin: the CSP allows nothing else)."""
    return web.Response(text=openapi.DOCS_CSS, content_type="text/css")


async def docs_icon(request: web.Request) -> web.Response:
    """The docs page's icon (a browser asks for one; a 404 would be a console error)."""
    return web.Response(text=openapi.DOCS_ICON, content_type="image/svg+xml", headers={"Cache-Control": "max-age=86400"})


async def index(request: web.Request) -> web.Response:
    """A placeholder page until the web UI lands."""
    return web.Response(text=INDEX_HTML, content_type="text/html")


OPERATIONS = [
    Operation("GET", "/healthz", healthz, "healthz", "Liveness", "meta", role=None, response=Status, limit="none"),
    Operation("GET", "/readyz", readyz, "readyz", "Readiness: NATS, PostgreSQL, the pool view", "meta", role=None,
              response=Status, limit="none", errors=(503,)),
    Operation("GET", "/metrics", metrics, "metrics", "Prometheus metrics (loopback, or admin)", "meta", role=None,
              media_type="text/plain"),
    Operation("GET", "/api/openapi.json", openapi_json, "openapi", "This document", "meta", role=None, limit="none"),
    Operation("GET", "/api/docs", docs, "docs", "The API reference page", "meta", role=None, limit="none",
              media_type="text/html"),
]


