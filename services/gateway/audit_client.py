"""Asking the audit service for pages of the audit log and for its verification, over NATS request/reply.

The gateway holds neither the audit key nor access to the audit tables: the audit service answers
``cmd.audit.<chain>.query`` and ``cmd.audit.<chain>.verify`` (libs.contracts.audit).
"""

from __future__ import annotations

from typing import Any

from libs.contracts import audit as contract
from libs.events import subjects
from services.gateway.command_client import CommandClient
from services.gateway.errors import ApiError
from services.gateway.schemas import AuditQuery

# The audit service's error codes and the HTTP status each means to a client.
AUDIT_STATUS = {"VALIDATION_FAILED": 422, "BUSY": 503, "UNAVAILABLE": 503}
# Its codes as the gateway names them to clients (stable codes of this API).
AUDIT_CODES = {"BUSY": "AUDIT_BUSY", "UNAVAILABLE": "AUDIT_UNAVAILABLE"}


class AuditClient(CommandClient):
    """The audit service's queries and verification as seen from the gateway (scoped by chain, not pool)."""

    service, code, noun = "audit", "AUDIT", "request"
    statuses = AUDIT_STATUS
    refusal_retry_after = "30"
    reply_type = contract.Reply
    error_type = contract.Error

    def __init__(self, nc: Any, *, timeout: float = 10.0, chain: str = contract.DEFAULT_CHAIN,
                 verify_timeout: float = contract.VERIFY_TIMEOUT) -> None:
        super().__init__(nc, timeout=timeout, pool_id=chain)
        self._verify_timeout = verify_timeout

    async def send(self, subject: str, request: Any, timeout: float | None = None) -> Any:
        """As CommandClient.send, with the audit service's codes renamed to the gateway's."""
        try:
            return await super().send(subject, request, timeout)
        except ApiError as exc:
            if exc.code in AUDIT_CODES:
                exc.code = AUDIT_CODES[exc.code]
            raise

    async def query(self, q: AuditQuery) -> dict[str, Any]:
        """One page of records (``items``, ``next``)."""
        request = contract.QueryRequest(since=q.since, until=q.until, actor=q.actor, type=q.type,
                                        aggregate_type=q.aggregate_type, aggregate_id=q.aggregate_id, after=q.after,
                                        before=q.before, limit=q.limit, order=q.order)
        result: dict[str, Any] = await self.send(subjects.AUDIT_QUERY, request)
        return result

    async def verify(self, deep: bool) -> dict[str, Any]:
        """The verification report (one at a time, run by the audit service; AUDIT_BUSY while one runs)."""
        result: dict[str, Any] = await self.send(subjects.AUDIT_VERIFY, contract.VerifyRequest(deep=deep),
                                                 self._verify_timeout)
        return result
