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


async def instance_logs(call: Call) -> Any:
    """The last lines of an instance's agent and ComfyUI logs (the pool asks the agent)."""
    q: s.LogsQuery = call.query
    return await call.app[POOL_CLIENT].send(api.HOST_LOGS, api.HostLogsRequest(
        instance_id=call.path("id"), tail=q.tail, **_who(call)))


async def create_join_token(call: Call) -> Any:
    """A join token for own GPU boxes (shown once)."""
    body: s.JoinTokenBody = call.body
    return await _command(call, api.CREATE_JOIN_TOKEN, api.CreateJoinTokenRequest(label=body.label, dph=body.dph,
                                                                                  **_who(call)))


async def list_join_tokens(call: Call) -> Any:
    """Join tokens from the projection (their hashes stay inside)."""
    view = call.app[POOL_READS].view
    return {"items": [{"token_id": t.id, "label": t.label, "dph": t.dph, "created_at": t.created_at,
                       "revoked": t.revoked, "nodes": sorted(n.name for n in view.nodes.values() if n.token_id == t.id)}
                      for t in sorted(view.join_tokens.values(), key=lambda t: t.created_at.isoformat() if t.created_at else "")]}


async def revoke_join_token(call: Call) -> Any:
    """Revoke a join token: boxes joined with it stop being used."""
    return await _command(call, api.REVOKE_JOIN_TOKEN, api.RevokeJoinTokenRequest(token_id=call.path("id"),
                                                                                  **_who(call)))


async def agent_join(call: Call) -> Any:
    """A box running ``stoker agent --join`` joins (authenticated by its join token, checked by the pool)."""
    body: s.AgentJoinBody = call.body
    return await call.app[POOL_CLIENT].send(api.AGENT_JOIN, api.AgentJoinRequest(
        token=body.token, url=body.url, name=body.name, gpu_name=body.gpu_name, actor="agent",
        correlation_id=call.correlation_id))


async def agent_heartbeat(call: Call) -> Any:
    """A joined box is alive."""
    body: s.AgentHeartbeatBody = call.body
    return await call.app[POOL_CLIENT].send(api.AGENT_HEARTBEAT, api.AgentHeartbeatRequest(
        token=body.token, node_id=body.node_id, actor="agent"))


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
    Operation("GET", "/api/v1/pool/instances/{id}/logs", instance_logs, "instance_logs",
              "The agent's and ComfyUI's log of one instance", "pool", role="admin", query=s.LogsQuery,
              response=s.InstanceLogs, errors=POOL_ERRORS),
    Operation("POST", "/api/v1/pool/join-tokens", create_join_token, "create_join_token",
              "A join token for your own GPU boxes (shown once)", "pool", role="admin", body=s.JoinTokenBody,
              response=s.JoinTokenMade, status=201, errors=(503,)),
    Operation("GET", "/api/v1/pool/join-tokens", list_join_tokens, "list_join_tokens", "Join tokens", "pool",
              role="admin", response=s.JoinTokenList),
    Operation("DELETE", "/api/v1/pool/join-tokens/{id}", revoke_join_token, "revoke_join_token",
              "Revoke a join token", "pool", role="admin", response=s.RevokeResult, errors=POOL_ERRORS),
    Operation("POST", "/api/v1/agents/join", agent_join, "agent_join", "A box running `stoker agent --join` joins",
              "pool", role=None, body=s.AgentJoinBody, response=s.AgentJoined, errors=(401, 503)),
    Operation("POST", "/api/v1/agents/heartbeat", agent_heartbeat, "agent_heartbeat", "A joined box is alive",
              "pool", role=None, body=s.AgentHeartbeatBody, response=s.HeartbeatResult, errors=(401, 404, 503)),
    Operation("POST", "/api/v1/pool/safe-mode", safe_mode, "set_safe_mode", "Turn safe mode on or off", "pool",
              role="admin", body=s.SafeModeBody, response=s.SafeModeResult, errors=(409, 503)),
    Operation("POST", "/api/v1/pool/reset", reset, "reset_pool",
              "Clear pending rentals, stuck requests and host penalties", "pool", role="admin", body=s.ResetBody,
              response=s.ResetResult, errors=(409, 503)),
    Operation("PUT", "/api/v1/pool/policy", apply_policy, "apply_pool_policy", "Apply a warm-pool policy", "pool",
              role="admin", body=s.PolicyBody, errors=(409, 503)),
    Operation("POST", "/api/v1/pool/simulate", simulate, "simulate_pool_policies",
              "Simulate warm-pool policies on the pool's recent demand", "pool", role="admin", body=s.SimulateBody,
              errors=POOL_ERRORS),
]
