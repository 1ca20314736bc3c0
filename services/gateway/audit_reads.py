"""Reading and verifying the audit chain through the audit service's own query and verify functions."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

import asyncpg
from nats.js import JetStreamContext

from libs.events import codec
from services.audit import repository as audit_repo
from services.audit.check import verify_audit
from services.audit.config import AuditConfig, ConfigError
from services.gateway.errors import ApiError
from services.gateway.schemas import AuditQuery

log = logging.getLogger("stoker.gateway")


def _unavailable(message: str) -> ApiError:
    return ApiError(503, "AUDIT_UNAVAILABLE", message, headers={"Retry-After": "30"})


class AuditAccess:
    """Queries need only the database; verification also needs the audit keyring (AUDIT_HMAC_KEY)."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.config: AuditConfig | None
        try:
            self.config = AuditConfig.from_mapping(env)
        except ConfigError as exc:
            log.info("audit verification is off: %s", exc)
            self.config = None
        self._verifying = asyncio.Lock()

    async def query(self, pool: asyncpg.Pool, q: AuditQuery) -> tuple[list[dict[str, Any]], int | None]:
        """One page of records and the keyset cursor of the next."""
        aq = audit_repo.Query(since=q.since, until=q.until, actor=q.actor, type=q.type, aggregate_type=q.aggregate_type,
                              aggregate_id=q.aggregate_id, after=q.after, before=q.before, limit=q.limit,
                              descending=q.order == "desc")
        try:
            async with pool.acquire() as conn:
                rows = await audit_repo.query(conn, aq)
        except asyncpg.UndefinedTableError:
            raise _unavailable("the audit log does not exist yet (is the audit service running?)") from None
        items = [record_json(r) for r in rows]
        more = len(rows) == q.limit
        return items, (items[-1]["seq"] if items and more else None)

    async def verify(self, pool: asyncpg.Pool, js: JetStreamContext, deep: bool) -> dict[str, Any]:
        """Verify the whole chain (one verification at a time); the report as builtins."""
        cfg = self.config
        if cfg is None:
            raise _unavailable("audit verification needs AUDIT_HMAC_KEY in the gateway's environment")
        async with self._verifying:
            try:
                async with pool.acquire() as conn:
                    report = await verify_audit(conn, js, chain=cfg.chain, keyring=cfg.keyring, streams=cfg.streams,
                                                deep=deep)
            except asyncpg.UndefinedTableError:
                raise _unavailable("the audit log does not exist yet (is the audit service running?)") from None
        return report.to_builtins()


def record_json(row: Any) -> dict[str, Any]:
    """A record as JSON-ready builtins (payload parsed, hash as hex)."""
    out = dict(row)
    out["payload"] = codec.loads(out["payload"].encode())
    out["hash"] = bytes(out["hash"]).hex()
    return out
