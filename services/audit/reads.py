"""Answering ``cmd.audit.<chain>.query`` and ``cmd.audit.<chain>.verify`` (libs.contracts.audit) over NATS.

Queries are served by every audit process in one queue group. Verification needs the keyring, so it
is answered only where the key lives, one at a time: a request while one runs gets ``BUSY``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import msgspec
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js import JetStreamContext

from libs.contracts import audit as contract
from libs.events import codec, subjects
from libs.responder import responder
from services.audit import repository
from services.audit.check import verify_audit
from services.audit.config import AuditConfig
from services.audit.writer import DB_ERRORS

log = logging.getLogger("stoker.audit")


class Refused(Exception):
    """A request the audit service will not answer now, with a stable code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def record_json(row: Any) -> dict[str, Any]:
    """A record as JSON-ready builtins (payload parsed, hash as hex)."""
    out = dict(row)
    out["payload"] = codec.loads(out["payload"].encode())
    out["hash"] = bytes(out["hash"]).hex()
    return out


def _no_log() -> Refused:
    return Refused("UNAVAILABLE", "the audit log does not exist yet")


class AuditReads:
    """The audit service's request/reply side over one database pool (and, for verify, the keyring)."""

    def __init__(self, nc: NatsClient, js: JetStreamContext, pool: asyncpg.Pool, chain: str, *,
                 keys: AuditConfig | None = None) -> None:
        """``keys``: the writer's config (keyring, streams) to also answer verify; None: queries only."""
        self._nc, self._js, self._pool, self._chain, self._config = nc, js, pool, chain, keys
        self.verifying = asyncio.Lock()  # held while a verification runs
        self._inflight: set[asyncio.Task[None]] = set()
        self._subs: list[Subscription] = []

    async def start(self) -> None:
        """Subscribe: queries in the readers' queue group; verify (this process holds the key) on its own."""
        chain = self._chain
        self._subs.append(await self._nc.subscribe(
            contract.query_subject(chain), queue=subjects.AUDIT_READERS,
            cb=self._responder(contract.QueryRequest, self.query, subjects.AUDIT_QUERY)))
        if self._config is not None:
            self._subs.append(await self._nc.subscribe(
                contract.verify_subject(chain),
                cb=self._responder(contract.VerifyRequest, self.verify, subjects.AUDIT_VERIFY)))
        await self._nc.flush()  # the server knows the subscriptions before start() returns

    async def stop(self) -> None:
        """Unsubscribe, then let answers already being computed finish (bounded by the caller)."""
        for sub in self._subs:
            try:
                await sub.unsubscribe()
            except Exception as exc:  # the connection is already closed
                log.debug("audit unsubscribe: %s", exc)
        self._subs.clear()
        with contextlib.suppress(Exception):  # the server forgets them before stop() goes on
            await self._nc.flush(2)
        if self._inflight:
            await asyncio.wait(list(self._inflight), timeout=5)
        for task in list(self._inflight):
            task.cancel()

    async def query(self, req: contract.QueryRequest) -> dict[str, Any]:
        """One page of records and the cursor of the next."""
        if req.limit < 1 or req.limit > contract.MAX_LIMIT:
            raise Refused("VALIDATION_FAILED", f"limit must be between 1 and {contract.MAX_LIMIT}")
        q = repository.Query(since=req.since, until=req.until, actor=req.actor, type=req.type,
                             aggregate_type=req.aggregate_type, aggregate_id=req.aggregate_id, after=req.after,
                             before=req.before, limit=req.limit, descending=req.order == "desc")
        try:
            async with self._pool.acquire() as conn:
                rows = await repository.query(conn, q)
        except asyncpg.UndefinedTableError:
            raise _no_log() from None
        items = [record_json(r) for r in rows]
        more = len(rows) == req.limit
        return {"items": items, "next": items[-1]["seq"] if items and more else None}

    async def verify(self, req: contract.VerifyRequest) -> dict[str, Any]:
        """Verify the whole chain; refused with BUSY while another verification runs."""
        if self.verifying.locked():
            raise Refused("BUSY", "a verification of the audit chain is already running; try again shortly")
        cfg = self._config
        assert cfg is not None  # subscribed to verify only with the keys
        async with self.verifying:
            try:
                async with self._pool.acquire() as conn:
                    report = await verify_audit(conn, self._js, chain=cfg.chain, keyring=cfg.keyring,
                                                streams=cfg.streams, deep=req.deep)
            except asyncpg.UndefinedTableError:
                raise _no_log() from None
        return report.to_builtins()

    def _responder(self, type_: type[Any], handler: Callable[[Any], Awaitable[Any]], command: str
                   ) -> Callable[[Msg], Awaitable[None]]:
        decoder = msgspec.json.Decoder(type_)

        async def answer(msg: Msg) -> contract.Reply:
            try:
                req = decoder.decode(msg.data or b"{}")
                return contract.Reply(ok=True, result=await handler(req))
            except (msgspec.ValidationError, msgspec.DecodeError) as exc:
                return contract.Reply(ok=False, error=contract.Error(code="VALIDATION_FAILED", message=str(exc)))
            except Refused as exc:
                return contract.Reply(ok=False, error=contract.Error(code=exc.code, message=str(exc)))
            except DB_ERRORS as exc:
                log.warning("audit %s: database unavailable (%s)", command, type(exc).__name__)
                return contract.Reply(ok=False, error=contract.Error(code="UNAVAILABLE",
                                                                     message="the audit database is unavailable"))
            except Exception:  # never leak internals to the caller
                log.exception("audit command %s failed", msg.subject)
                return contract.Reply(ok=False, error=contract.Error(code="INTERNAL", message="internal error"))

        return responder("audit", command, answer, self._inflight, error_codes=("INTERNAL", "UNAVAILABLE"))
