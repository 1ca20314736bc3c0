"""The pool's command API on NATS request/reply (``cmd.pool.<verb>``): requests and replies.

The gateway and the generation service import these types; they are the contract.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec

from libs.events import pool as ev
from libs.events import subjects

CLAIM = subjects.command(subjects.CMD_POOL, "claim")
RELEASE = subjects.command(subjects.CMD_POOL, "release")
RENEW = subjects.command(subjects.CMD_POOL, "renew")
PREWARM = subjects.command(subjects.CMD_POOL, "prewarm")
TERMINATE = subjects.command(subjects.CMD_POOL, "terminate")
CONFIGURE = subjects.command(subjects.CMD_POOL, "configure")
SAFE_MODE = subjects.command(subjects.CMD_POOL, "safe_mode")
RESET = subjects.command(subjects.CMD_POOL, "reset")
STATUS = subjects.command(subjects.CMD_POOL, "status")
SET_PROVIDER_KEY = subjects.command(subjects.CMD_POOL, "set_provider_key")
HOST_ACCESS = subjects.command(subjects.CMD_POOL, "host_access")
HOST_LOGS = subjects.command(subjects.CMD_POOL, "host_logs")
CREATE_JOIN_TOKEN = subjects.command(subjects.CMD_POOL, "create_join_token")
REVOKE_JOIN_TOKEN = subjects.command(subjects.CMD_POOL, "revoke_join_token")
AGENT_JOIN = subjects.command(subjects.CMD_POOL, "agent_join")
AGENT_HEARTBEAT = subjects.command(subjects.CMD_POOL, "agent_heartbeat")
POLICY = subjects.command(subjects.CMD_POOL, "policy")
SIMULATE = subjects.command(subjects.CMD_POOL, "simulate")
QUEUE_GROUP = "pool"


for_pool = subjects.scoped  # ``cmd.pool.claim`` -> ``cmd.pool.<pool id>.claim``


class Request(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Fields every command carries: who asks, and for tracing, why."""

    actor: str = "system"
    correlation_id: str | None = None


class ClaimRequest(Request, kw_only=True, forbid_unknown_fields=True):
    """Take one Ready instance under a lease; prefer one that has ``checkpoint``."""

    holder: str
    checkpoint: str | None = None
    lease_s: float | None = None


class ReleaseRequest(Request, kw_only=True, forbid_unknown_fields=True):
    """Give a claimed instance back."""

    instance_id: str
    lease_id: str


class RenewRequest(Request, kw_only=True, forbid_unknown_fields=True):
    """Extend a lease."""

    instance_id: str
    lease_id: str
    lease_s: float | None = None


class PrewarmRequest(Request, kw_only=True, forbid_unknown_fields=True):
    """Rent ``count`` instances now; a retry with the same key never rents twice."""

    count: int = 1
    idempotency_key: str | None = None


class TerminateRequest(Request, kw_only=True, forbid_unknown_fields=True):
    """Terminate one instance."""

    instance_id: str
    reason: str = "admin"


class ConfigureRequest(Request, kw_only=True, forbid_unknown_fields=True):
    """A partial update of the pool configuration (nested keys merge)."""

    changes: dict[str, Any]


class SafeModeRequest(Request, kw_only=True, forbid_unknown_fields=True):
    """Turn safe mode on (terminate everything, rent nothing) or off."""

    enabled: bool
    reason: str = "admin"


class ResetRequest(Request, kw_only=True, forbid_unknown_fields=True):
    """Clear transient state: pending rentals are given up (orphan checks catch any that billed)."""

    reason: str = ""


# Model sources whose tokens may be set like a provider key, and the variable rented machines get them in.
MODEL_TOKEN_ENV = {"huggingface": "HF_TOKEN", "civitai": "CIVITAI_TOKEN"}


class SetProviderKeyRequest(Request, kw_only=True, forbid_unknown_fields=True):
    """Replace the provider API key, or a model source's token (``provider`` "huggingface" or "civitai"),
    at runtime (core NATS only: never stored, never logged)."""

    provider: str = "vastai"
    api_key: str

    def __repr__(self) -> str:
        return f"SetProviderKeyRequest(provider={self.provider!r}, api_key=<redacted>)"


class HostAccessRequest(Request, kw_only=True, forbid_unknown_fields=True):
    """How to call the host at ``base_url`` (a live instance's): its instance secret, core NATS only."""

    base_url: str


class HostAccess(msgspec.Struct, kw_only=True):
    """The answer to a HostAccessRequest: send ``Authorization: Bearer <secret>`` ("" = the host needs none)."""

    instance_id: str
    secret: str = ""

    def __repr__(self) -> str:
        return f"HostAccess(instance_id={self.instance_id!r}, secret=<redacted>)"


class HostLogsRequest(Request, kw_only=True, forbid_unknown_fields=True):
    """The last ``tail`` lines of an instance's agent and ComfyUI logs (fetched by the pool, which has the secret)."""

    instance_id: str
    tail: int = 200


class CreateJoinTokenRequest(Request, kw_only=True, forbid_unknown_fields=True):
    """Make a token that lets your own GPU boxes join (``stoker agent --join URL --token T``)."""

    label: str = ""
    dph: float = 0.0


class RevokeJoinTokenRequest(Request, kw_only=True, forbid_unknown_fields=True):
    """Stop a join token admitting boxes; boxes joined with it stop being used."""

    token_id: str


class AgentJoinRequest(Request, kw_only=True, forbid_unknown_fields=True):
    """A box joins: its join token, where its agent answers, its name and GPU."""

    token: str
    url: str
    name: str
    gpu_name: str = ""

    def __repr__(self) -> str:
        return f"AgentJoinRequest(name={self.name!r}, url={self.url!r}, token=<redacted>)"


class AgentHeartbeatRequest(Request, kw_only=True, forbid_unknown_fields=True):
    """A joined box is alive."""

    token: str
    node_id: str

    def __repr__(self) -> str:
        return f"AgentHeartbeatRequest(node_id={self.node_id!r}, token=<redacted>)"


class StatusRequest(Request, kw_only=True, forbid_unknown_fields=True):
    """Ask for the pool view."""


class Claim(msgspec.Struct, kw_only=True):
    """A granted claim."""

    instance_id: str
    lease_id: str
    base_url: str
    expires_at: datetime
    models: tuple[str, ...] = ()
    gpu_name: str = ""
    dph: float = 0.0


class Error(msgspec.Struct, kw_only=True):
    """Why a command was refused: a stable code and a message for people."""

    code: str
    message: str
    details: Any = None


class Reply(msgspec.Struct, kw_only=True, omit_defaults=True):
    """Every reply: ``ok`` with a result, or not ok with an error."""

    ok: bool
    result: Any = None
    error: Error | None = None


class PolicyRequest(Request, kw_only=True, forbid_unknown_fields=True):
    """Apply a warm-pool policy (None: back to min_size and idle_timeout_s alone)."""

    policy: ev.PolicySpec | None = None
    reason: str = ""


class SimulateRequest(Request, kw_only=True, forbid_unknown_fields=True):
    """Replay the pool's last ``days`` of claims against ``policies`` (default: the built-in candidates)."""

    days: float = 14.0
    policies: list[ev.PolicySpec] = []
    target_p95: float | None = None
