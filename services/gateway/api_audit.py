"""Audit endpoints: pages of the audit log and its verification, through the audit service's functions."""

from __future__ import annotations

from typing import Any

from services.gateway import schemas as s
from services.gateway.errors import validation_failed
from services.gateway.resources import AUDIT, DATABASE, JS
from services.gateway.routing import Call, Operation, require_postgres


async def list_audit(call: Call) -> Any:
    """One page of audit records (keyset pagination on the audit sequence)."""
    q: s.AuditQuery = call.query
    if q.since is not None and q.until is not None and q.since > q.until:
        raise validation_failed("since is after until")
    require_postgres(call.app)
    items, next_seq = await call.app[AUDIT].query(call.app[DATABASE].pool, q)
    return {"items": items, "next": next_seq}


async def verify(call: Call) -> Any:
    """Recompute the chain, HMACs and checkpoints; name the first bad record and why."""
    require_postgres(call.app)
    return await call.app[AUDIT].verify(call.app[DATABASE].pool, call.app[JS], call.body.deep)


OPERATIONS = [
    Operation("GET", "/api/v1/audit", list_audit, "list_audit", "Audit records, filtered, keyset-paginated", "audit",
              role="admin", query=s.AuditQuery, response=s.AuditPage, errors=(503,)),
    Operation("POST", "/api/v1/audit/verify", verify, "verify_audit", "Verify the audit chain", "audit",
              role="admin", body=s.VerifyBody, response=s.VerifyReport, errors=(503,)),
]
