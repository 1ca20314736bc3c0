"""Pool endpoints: read the gateway's projection; writes are admin commands to the pool over NATS."""

from __future__ import annotations

from typing import Any

import msgspec
from aiohttp import web

from libs.events.pool import PoolConfig
from services.gateway import schemas as s
from services.gateway.errors import validation_failed
from services.gateway.live import redact_summary
from services.gateway.resources import CONFIG, POOL_CLIENT, POOL_READS
from services.gateway.routing import Call, Operation
from services.pool import api


async def get_pool(call: Call) -> Any:
    """The pool from the gateway's projection (admins see where instances run)."""
    body = call.app[POOL_READS].summary_json(None if call.who.is_admin else redact_summary)
    return web.Response(body=body, content_type="application/json")


async def _command(call: Call, subject: str, request: api.Request, timeout: float | None = None) -> Any:
    result = await call.app[POOL_CLIENT].send(subject, request, timeout)
    await call.app[POOL_READS].settle()  # the next GET shows what this command did
    return result


def _who(call: Call) -> dict[str, Any]:
    return {"actor": call.who.actor, "correlation_id": call.correlation_id}


async def configure(call: Call) -> Any:
    """A partial configuration update (nested objects merge); the pool validates the result."""
    changes = msgspec.to_builtins(call.body)
    if not changes:
        raise validation_failed("nothing to change: send at least one configuration field")
    return await _command(call, api.CONFIGURE, api.ConfigureRequest(changes=changes, **_who(call)))


async def prewarm(call: Call) -> Any:
    """Rent instances now, beyond the desired size."""
    body: s.PrewarmBody = call.body
    return await _command(call, api.PREWARM, api.PrewarmRequest(count=body.count, idempotency_key=body.idempotency_key,
                                                                **_who(call)),
                          call.app[CONFIG].prewarm_timeout_s)


async def terminate(call: Call) -> Any:
    """Terminate one instance."""
    return await _command(call, api.TERMINATE, api.TerminateRequest(instance_id=call.path("id"),
                                                                    reason=call.body.reason, **_who(call)))


async def safe_mode(call: Call) -> Any:
    """Turn safe mode on or off."""
    body: s.SafeModeBody = call.body
    return await _command(call, api.SAFE_MODE, api.SafeModeRequest(enabled=body.enabled, reason=body.reason,
                                                                   **_who(call)))


async def reset(call: Call) -> Any:
    """Clear the pool's transient state."""
    return await _command(call, api.RESET, api.ResetRequest(reason=call.body.reason, **_who(call)))


async def apply_policy(call: Call) -> Any:
    """Apply a warm-pool policy (an event, audited)."""
    body: s.PolicyBody = call.body
    return await _command(call, api.POLICY, api.PolicyRequest(policy=body.policy, reason=body.reason, **_who(call)))


async def simulate(call: Call) -> Any:
    """Simulate policies on the pool's recent demand (the pool service runs it)."""
    body: s.SimulateBody = call.body
    return await call.app[POOL_CLIENT].send(api.SIMULATE, api.SimulateRequest(
        days=body.days, policies=body.policies, target_p95=body.target_p95, **_who(call)), SIMULATE_TIMEOUT_S)


SIMULATE_TIMEOUT_S = 120.0
POOL_ERRORS = (404, 409, 503)
OPERATIONS = [
    Operation("GET", "/api/v1/pool", get_pool, "get_pool", "The pool: instances, costs, configuration, spend", "pool",
              response=s.PoolSummary),
    Operation("PUT", "/api/v1/pool/config", configure, "configure_pool", "Change the pool configuration (partial)",
              "pool", role="admin", body=s.PoolConfigPatch, response=PoolConfig,
              errors=(409, 503)),
    Operation("POST", "/api/v1/pool/prewarm", prewarm, "prewarm_pool", "Rent instances now", "pool", role="admin",
              body=s.PrewarmBody, response=s.PrewarmResult, status=202, errors=POOL_ERRORS),
    Operation("POST", "/api/v1/pool/instances/{id}/terminate", terminate, "terminate_instance",
              "Terminate one instance", "pool", role="admin", body=s.TerminateBody, response=s.TerminateResult,
              status=202, errors=POOL_ERRORS),
    Operation("POST", "/api/v1/pool/safe-mode", safe_mode, "set_safe_mode", "Turn safe mode on or off", "pool",
              role="admin", body=s.SafeModeBody, response=s.SafeModeResult, errors=(409, 503)),
    Operation("POST", "/api/v1/pool/reset", reset, "reset_pool", "Clear pending rentals and stuck requests", "pool",
              role="admin", body=s.ResetBody, response=s.ResetResult, errors=(409, 503)),
    Operation("PUT", "/api/v1/pool/policy", apply_policy, "apply_pool_policy", "Apply a warm-pool policy", "pool",
              role="admin", body=s.PolicyBody, errors=(409, 503)),
    Operation("POST", "/api/v1/pool/simulate", simulate, "simulate_pool_policies",
              "Simulate warm-pool policies on the pool's recent demand", "pool", role="admin", body=s.SimulateBody,
              errors=POOL_ERRORS),
]
