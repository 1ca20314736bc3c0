"""The typed keys under which the app keeps its resources (one place, so modules do not import app.py)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import asyncpg
from aiohttp import web
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext

from services.gateway.config import GatewayConfig, Rate
from services.gateway.ratelimit import Limiter

if TYPE_CHECKING:
    from services.gateway.account_admin import AccountAdmin
    from services.gateway.accounts import Accounts
    from services.gateway.audit_client import AuditClient
    from services.gateway.comfy_proxy import InstanceInfo
    from services.gateway.comfy_ws import ComfyClients
    from services.gateway.gen_client import GenClient
    from services.gateway.gen_reads import GenReads
    from services.gateway.live import LiveHub
    from services.gateway.metrics import Metrics
    from services.gateway.pool_client import PoolClient
    from services.gateway.pool_reads import PoolReads
    from services.gateway.recorder import EventRecorder
    from services.gateway.routing import Operation

Clock = Callable[[], datetime]
log = logging.getLogger("stoker.gateway")


@dataclass
class Limits:
    """The rate limiters: the API's (per credential, or per IP when anonymous), per account (all its
    credentials together) and sign-in's (failures, per IP and per account named)."""

    api: Limiter
    login: Limiter
    account: Limiter = field(default_factory=lambda: Limiter(Rate(0, 1.0)))
    pending: set[Any] = field(default_factory=set)  # background records of refusals


@dataclass
class Database:
    """PostgreSQL for the gateway's own tables: ``ready`` once its migrations are applied; ``healthy``
    while it answers (a watchdog and every bounded call keep it current)."""

    pool: asyncpg.Pool
    ready: bool = False
    tasks: set[Any] = field(default_factory=set)
    healthy: bool = True

    def mark(self, healthy: bool) -> None:
        """Record whether PostgreSQL answers (logged when it changes)."""
        if healthy != self.healthy:
            log.warning("PostgreSQL %s",
                        "answers again" if healthy else "does not answer: requests that need it get 503")
        self.healthy = healthy


CORRELATION_ID = web.RequestKey("correlation_id", str)
CONFIG = web.AppKey("config", GatewayConfig)
CLOCK: web.AppKey[Clock] = web.AppKey("clock")
NATS = web.AppKey("nats", NatsClient)
JS = web.AppKey("js", JetStreamContext)
PG_POOL = web.AppKey("pg_pool", asyncpg.Pool)
DATABASE = web.AppKey("database", Database)
LIMITS = web.AppKey("limits", Limits)
RECORDER: web.AppKey[EventRecorder] = web.AppKey("recorder")
POOL_CLIENT: web.AppKey[PoolClient] = web.AppKey("pool_client")
POOL_READS: web.AppKey[PoolReads] = web.AppKey("pool_reads")
HUB: web.AppKey[LiveHub] = web.AppKey("live_hub")
METRICS: web.AppKey[Metrics] = web.AppKey("metrics")
AUDIT: web.AppKey[AuditClient] = web.AppKey("audit")
ACCOUNTS: web.AppKey[Accounts] = web.AppKey("accounts")
ACCOUNT_ADMIN: web.AppKey[AccountAdmin] = web.AppKey("account_admin")
OPENAPI_DOC: web.AppKey[dict[str, Any]] = web.AppKey("openapi_doc")
OPERATIONS: web.AppKey[list[Operation]] = web.AppKey("operations")
GEN_CLIENT: web.AppKey[GenClient] = web.AppKey("gen_client")
GEN_READS: web.AppKey[GenReads] = web.AppKey("gen_reads")
COMFY_CLIENTS: web.AppKey[ComfyClients] = web.AppKey("comfy_clients")
COMFY_INFO: web.AppKey[InstanceInfo] = web.AppKey("comfy_info")
