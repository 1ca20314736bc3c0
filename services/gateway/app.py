"""The gateway's aiohttp app: health and readiness probes, a placeholder page, JSON errors."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass

import asyncpg
import nats
from aiohttp import web
from nats.aio.client import Client as NatsClient

from services.gateway.errors import error_middleware, error_response

log = logging.getLogger("stoker.gateway")
PROBE_TIMEOUT = 2.0


@dataclass(frozen=True)
class GatewayConfig:
    """The gateway's settings, read from an injected mapping (os.environ in production)."""

    nats_url: str
    database_url: str
    host: str = "127.0.0.1"
    port: int = 8080

    @classmethod
    def from_mapping(cls, env: Mapping[str, str]) -> GatewayConfig:
        """Build the config; NATS_URL and DATABASE_URL are required."""
        missing = [name for name in ("NATS_URL", "DATABASE_URL") if not env.get(name)]
        if missing:
            raise ValueError(f"missing configuration: {', '.join(missing)}")
        return cls(
            nats_url=env["NATS_URL"],
            database_url=env["DATABASE_URL"],
            host=env.get("STOKER_GATEWAY_HOST") or "127.0.0.1",
            port=int(env.get("STOKER_GATEWAY_PORT") or 8080),
        )


CONFIG = web.AppKey("config", GatewayConfig)
NATS = web.AppKey("nats", NatsClient)
PG_POOL = web.AppKey("pg_pool", asyncpg.Pool)

INDEX_HTML = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Stoker</title></head>
<body><h1>Stoker is running</h1><p>The web UI is coming. Health: <a href="/readyz">/readyz</a></p></body></html>
"""


async def nats_ctx(app: web.Application) -> AsyncIterator[None]:
    """Connect to NATS for the app's lifetime; drain on shutdown."""
    nc = await nats.connect(
        app[CONFIG].nats_url, name="stoker-gateway", max_reconnect_attempts=-1, reconnect_time_wait=1
    )
    app[NATS] = nc
    yield
    try:
        await asyncio.wait_for(nc.drain(), 5)
    except (TimeoutError, nats.errors.Error):
        await nc.close()


async def pg_ctx(app: web.Application) -> AsyncIterator[None]:
    """A lazily connecting asyncpg pool: the gateway starts, and reports not ready, while PostgreSQL is down."""
    pool = await asyncpg.create_pool(app[CONFIG].database_url, min_size=0, max_size=5)
    app[PG_POOL] = pool
    yield
    try:
        await asyncio.wait_for(pool.close(), 5)
    except TimeoutError:
        pool.terminate()


async def healthz(request: web.Request) -> web.Response:
    """Liveness: the process answers."""
    return web.json_response({"status": "ok"})


async def _postgres_ok(pool: asyncpg.Pool) -> bool:
    try:
        async with asyncio.timeout(PROBE_TIMEOUT):
            return bool(await pool.fetchval("SELECT 1") == 1)
    except Exception as exc:  # noqa: BLE001 -- any failure means not ready; the probe must not raise
        log.debug("postgres probe failed: %r", exc)
        return False


async def readyz(request: web.Request) -> web.Response:
    """Readiness: NATS connected and PostgreSQL answers SELECT 1."""
    problems = []
    if not request.app[NATS].is_connected:
        problems.append("NATS is not connected")
    if not await _postgres_ok(request.app[PG_POOL]):
        problems.append("PostgreSQL does not answer")
    if problems:
        return error_response(503, "NOT_READY", "; ".join(problems))
    return web.json_response({"status": "ready"})


async def index(request: web.Request) -> web.Response:
    """A placeholder page until the web UI lands."""
    return web.Response(text=INDEX_HTML, content_type="text/html")


def create_app(env: Mapping[str, str]) -> web.Application:
    """Build the gateway app from a configuration mapping."""
    app = web.Application(middlewares=[error_middleware])
    app[CONFIG] = GatewayConfig.from_mapping(env)
    app.cleanup_ctx.extend([nats_ctx, pg_ctx])
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/", index)
    return app
