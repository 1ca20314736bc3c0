"""The gateway's aiohttp app: wiring (resources with a lifetime), probes, metrics, docs and the API routes.

The gateway translates, it does not decide: requests become Structs, then a pool command over
NATS, a read of the gateway's own projections, or an accounts use case; refusals become the
one JSON error shape. Adding an API area means adding an ``api_*.py`` module to ``API_MODULES``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from datetime import datetime, timedelta

import asyncpg
import nats
from aiohttp import web

from libs import natsconn
from libs.events import streams
from libs.events.store import EventStore, utc_now
from libs.observability.web import trace_middleware
from services.gateway import (
    api_accounts,
    api_admin,
    api_audit,
    api_auth,
    api_gallery,
    api_generations,
    api_history,
    api_live,
    api_meta,
    api_muses,
    api_pool,
    api_usage,
    comfy_compat,
    dependencies,
    openapi,
    repository,
)
from services.gateway import web as web_ui
from services.gateway.account_admin import AccountAdmin
from services.gateway.accounts import Accounts
from services.gateway.audit_client import AuditClient
from services.gateway.config import GatewayConfig
from services.gateway.errors import error_middleware
from services.gateway.gen_reads import gen_ctx
from services.gateway.live import LiveHub
from services.gateway.metrics import Metrics, metrics_middleware
from services.gateway.pool_client import PoolClient
from services.gateway.pool_reads import PoolReads
from services.gateway.proxy import proxy_middleware
from services.gateway.ratelimit import Limiter
from services.gateway.recorder import EventRecorder
from services.gateway.resources import (
    ACCOUNT_ADMIN,
    ACCOUNTS,
    AUDIT,
    CLOCK,
    CONFIG,
    DATABASE,
    HUB,
    JS,
    LIMITS,
    METRICS,
    NATS,
    OPENAPI_DOC,
    OPERATIONS,
    PG_POOL,
    POOL_CLIENT,
    POOL_READS,
    RECORDER,
    Database,
    Limits,
)
from services.gateway.routing import Operation, add_operations
from services.gateway.security import security_middleware

__all__ = ["CONFIG", "NATS", "PG_POOL", "GatewayConfig", "create_app"]

log = logging.getLogger("stoker.gateway")


def _is_websocket(request: web.Request) -> bool:
    """Long-lived WebSockets get no request span (it would last as long as the socket)."""
    return request.headers.get("Upgrade", "").lower() == "websocket"
MIGRATE_RETRY_MAX_S = 10.0
API_MODULES = (api_meta, api_pool, api_history, api_audit, api_usage, api_auth, api_accounts, api_admin, api_live,
               api_generations, api_muses, api_gallery, comfy_compat)


async def _quiet(exc: Exception) -> None:
    log.debug("nats: %r", exc)


async def nats_ctx(app: web.Application) -> AsyncIterator[None]:
    """Connect to NATS, declare the streams, and build what talks to them; drain on shutdown."""
    cfg = app[CONFIG]
    nc = await natsconn.connect(cfg.nats_url, name="stoker-gateway", max_reconnect_attempts=-1, reconnect_time_wait=1,
                                error_cb=_quiet)
    app[NATS] = nc
    js = nc.jetstream(timeout=10)
    app[JS] = js
    await streams.ensure_streams(js)
    app[RECORDER] = EventRecorder(js, EventStore(js, clock=app[CLOCK]), connected=lambda: nc.is_connected)
    app[POOL_CLIENT] = PoolClient(nc, timeout=cfg.pool_timeout_s, pool_id=cfg.pool_id)
    app[AUDIT] = AuditClient(nc, chain=cfg.audit_chain)
    yield
    try:
        await asyncio.wait_for(nc.drain(), 5)
    except (TimeoutError, nats.errors.Error):
        await nc.close()


async def _migrate(db: Database, admin: AccountAdmin) -> None:
    """Apply the gateway's migrations (then make the admin key's account), retrying while PostgreSQL is down."""
    delay = 0.2
    while True:
        try:
            async with db.pool.acquire() as conn:
                await repository.migrate(conn)
            db.ready = True
            try:
                await admin.ensure_builtin()
            except Exception as exc:  # noqa: BLE001 -- made again on the admin key's first browser session
                log.error("could not create the admin key's account yet: %s", type(exc).__name__)
            return
        except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            log.warning("gateway migrations waiting for PostgreSQL (%s); retrying in %.1fs", type(exc).__name__, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, MIGRATE_RETRY_MAX_S)


async def pg_ctx(app: web.Application) -> AsyncIterator[None]:
    """A lazily connecting asyncpg pool: the gateway starts, and reports not ready, while PostgreSQL is down."""
    cfg = app[CONFIG]
    # Connecting is bounded by the dependency timeout; a query by 10 s (a request stops waiting for it
    # much sooner: see dependencies.py).
    pool = await asyncpg.create_pool(cfg.database_url, min_size=0, max_size=10, timeout=cfg.dependency_timeout_s,
                                     command_timeout=10)
    app[PG_POOL] = pool
    db = app[DATABASE] = Database(pool)
    ttl = timedelta(seconds=cfg.session_ttl_s)
    admin = app[ACCOUNT_ADMIN] = AccountAdmin(pool, app[RECORDER], app[CLOCK], cfg.admin_key, ttl,
                                                scrypt_n=cfg.scrypt_n)
    watchdog = asyncio.create_task(dependencies.watch(lambda: pool.fetchval("SELECT 1"), db.mark,
                                                      timeout=cfg.dependency_timeout_s), name="gateway-pg-watch")
    db.tasks.add(watchdog)
    try:
        await asyncio.wait_for(_migrate(db, admin), 5)
    except TimeoutError:
        task = asyncio.create_task(_migrate(db, admin), name="gateway-migrate")  # keep trying in the background
        db.tasks.add(task)
        task.add_done_callback(db.tasks.discard)
    app[ACCOUNTS] = Accounts(pool, app[RECORDER], app[CLOCK], ttl,
                             login_fingerprint_key=(cfg.admin_key or "stoker-login").encode(),
                             scrypt_n=cfg.scrypt_n, max_tokens=cfg.max_tokens_per_user)
    yield
    for task in list(db.tasks):
        task.cancel()
    try:
        await asyncio.wait_for(pool.close(), 5)
    except TimeoutError:
        pool.terminate()


async def pool_reads_ctx(app: web.Application) -> AsyncIterator[None]:
    """Follow the pool stream; pool changes go to live clients."""
    reads = PoolReads(app[JS], app[CONFIG].pool_id, app[CLOCK])
    reads.listen(app[HUB].on_pool_event)
    app[POOL_READS] = reads
    await reads.start()
    yield
    await reads.stop()


async def _close_live(app: web.Application) -> None:
    app[HUB].close()


def create_app(env: Mapping[str, str], *, clock: Callable[[], datetime] = utc_now) -> web.Application:
    """Build the gateway app from a configuration mapping."""
    config = GatewayConfig.from_mapping(env)
    metrics_registry = Metrics()
    app = web.Application(middlewares=[proxy_middleware(config.trusted_proxies),
                                       trace_middleware("gateway", skip=_is_websocket),
                                       security_middleware(config.cors_origins), metrics_middleware(metrics_registry),
                                       error_middleware], client_max_size=1024 * 1024)
    app[CONFIG] = config
    app[CLOCK] = clock
    app[METRICS] = metrics_registry
    app[HUB] = LiveHub()
    app[LIMITS] = Limits(api=Limiter(config.api_rate), login=Limiter(config.login_rate),
                         account=Limiter(config.account_rate))
    app.cleanup_ctx.extend([nats_ctx, pg_ctx, pool_reads_ctx, gen_ctx])
    app.on_shutdown.append(_close_live)
    operations: list[Operation] = []
    for module in API_MODULES:
        operations += add_operations(app, module.OPERATIONS)
    app[OPERATIONS] = operations
    app[OPENAPI_DOC] = openapi.document(operations)
    app.router.add_get("/api/docs.css", api_meta.docs_css)
    app.router.add_get("/api/icon.svg", api_meta.docs_icon)
    web_ui.add_routes(app, env)  # the UI at / and /ui/ (the placeholder page without web/)
    if not config.admin_key:
        log.warning("no STOKER_ADMIN_KEY: the admin role is unreachable")
    return app
