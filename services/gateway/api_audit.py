"""Audit endpoints: pages of the audit log and its verification, asked of the audit service over NATS."""

from __future__ import annotations

from typing import Any

from services.gateway import schemas as s
from services.gateway.errors import validation_failed
from services.gateway.resources import AUDIT
from services.gateway.routing import Call, Operation


async def list_audit(call: Call) -> Any:
    """One page of audit records (keyset pagination on the audit sequence)."""
    q: s.AuditQuery = call.query
    if q.since is not None and q.until is not None and q.since > q.until:
        raise validation_failed("since is after until")
    return await call.app[AUDIT].query(q)


async def verify(call: Call) -> Any:
    """Recompute the chain, HMACs and checkpoints; name the first bad record and why."""
    return await call.app[AUDIT].verify(call.body.deep)


OPERATIONS = [
    Operation("GET", "/api/v1/audit", list_audit, "list_audit", "Audit records, filtered, keyset-paginated", "audit",
              role="admin", query=s.AuditQuery, response=s.AuditPage, errors=(503,)),
    Operation("POST", "/api/v1/audit/verify", verify, "verify_audit", "Verify the audit chain", "audit",
              role="admin", body=s.VerifyBody, response=s.VerifyReport, errors=(503,)),
]
