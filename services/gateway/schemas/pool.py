"""Pool request and response types."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from libs.events.pool import PolicySpec, PoolConfig
from services.gateway.schemas.base import Checked, Id, Text

PoolState = Literal["renting", "loading", "ready", "claimed", "terminating", "terminated", "failed"]


class AgentPhase(msgspec.Struct, kw_only=True):
    """What the host's agent last reported: phase (booting, downloading, starting_comfyui, ready, failed,
    unreachable), why, and model download progress in bytes."""

    phase: str | None = None
    reason: str = ""
    bytes_done: int = 0
    bytes_total: int | None = None
    comfyui_version: str | None = None


class PoolProblem(msgspec.Struct, kw_only=True):
    """Something that keeps the pool from doing what it is configured to do, since when."""

    code: str
    message: str
    since: datetime


class InstanceLogs(msgspec.Struct, kw_only=True):
    """The last lines of an instance's agent log and ComfyUI log."""

    agent: list[str] = []
    comfyui: list[str] = []


class LogsQuery(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """How many lines of each log."""

    tail: Annotated[int, Meta(ge=1, le=10000)] = 200


class PoolInstance(msgspec.Struct, kw_only=True):
    """One instance as the dashboard shows it (admins also see where it runs)."""

    id: str
    state: PoolState
    status_message: str | None = None
    provider_id: str | None = None
    gpu: str | None = None
    host_id: str | None = None
    dph: float = 0.0
    uptime_s: float = 0.0
    accrued_cost: float = 0.0
    cost_by_state: dict[str, float] = {}
    cost_bucket: str = ""
    lease_holder: str | None = None
    lease_expires_at: datetime | None = None
    models: list[str] = []
    base_url: str | None = None
    termination_reason: str | None = None
    failure: str | None = None
    provider: str = ""
    ssh_host: str | None = None
    ssh_port: int | None = None
    agent: AgentPhase | None = None
    last_probe_error: str | None = None
    logs_url: str | None = None


class PoolSummary(msgspec.Struct, kw_only=True):
    """The pool: instances with costs, configuration, safe mode and spend."""

    pool_id: str
    config: PoolConfig
    safe_mode: bool
    safe_mode_reason: str
    instances: list[PoolInstance]
    spend_rate_dph: float
    spend_today: float
    cost_by_state: dict[str, float]
    avoided_hosts: list[str]
    seq: int
    problems: list[PoolProblem] = []  # what keeps the pool from its configured size, and since when


def _partial(struct: type[msgspec.Struct], name: str) -> type[Checked]:
    """A Struct with every field of ``struct`` optional (nested Structs partial too), for PATCH-like updates."""
    fields: list[tuple[str, Any, Any]] = []
    for f in msgspec.structs.fields(struct):
        kind = f.type
        if isinstance(kind, type) and issubclass(kind, msgspec.Struct):
            kind = _partial(kind, f"{kind.__name__}Patch")
        fields.append((f.name, kind | msgspec.UnsetType, msgspec.UNSET))
    partial: type[Checked] = msgspec.defstruct(name, fields, bases=(Checked,), kw_only=True,  # type: ignore[assignment]
                                               forbid_unknown_fields=True, omit_defaults=True, module=__name__)
    return partial


PoolConfigPatch = _partial(PoolConfig, "PoolConfigPatch")
PoolConfigPatch.__doc__ = "A partial pool configuration: only the fields given change (nested objects merge)."


class PrewarmBody(Checked, kw_only=True, forbid_unknown_fields=True):
    """Rent instances now; a retry with the same idempotency key never rents twice."""

    count: Annotated[int, Meta(ge=1, le=64)] = 1
    idempotency_key: Id | None = None


class TerminateBody(Checked, kw_only=True, forbid_unknown_fields=True):
    """Why the instance is being terminated (free text, kept in the event)."""

    reason: Text = "admin"


class SafeModeBody(Checked, kw_only=True, forbid_unknown_fields=True):
    """Turn safe mode on (terminate everything, rent nothing) or off."""

    enabled: bool
    reason: Text = "admin"


class ResetBody(Checked, kw_only=True, forbid_unknown_fields=True):
    """Clear the pool's transient state."""

    reason: Text = ""


class JoinTokenBody(Checked, kw_only=True, forbid_unknown_fields=True):
    """A join token for your own GPU boxes: a label and what an hour of such a box costs (default 0)."""

    label: Text = ""
    dph: Annotated[float, Meta(ge=0, le=1000)] = 0.0


class JoinTokenMade(msgspec.Struct, kw_only=True):
    """A new join token: ``token`` is shown this once (only its hash is kept)."""

    token_id: str
    token: str
    label: str
    dph: float


class JoinTokenInfo(msgspec.Struct, kw_only=True):
    """A join token as listed (never the token itself)."""

    token_id: str
    label: str
    dph: float
    created_at: datetime | None = None
    revoked: bool = False
    nodes: list[str] = []


class JoinTokenList(msgspec.Struct, kw_only=True):
    """Every join token of the pool."""

    items: list[JoinTokenInfo]


class RevokeResult(msgspec.Struct, kw_only=True):
    """Whether the token was revoked now (False: it already was)."""

    revoked: bool


Secret = Annotated[str, Meta(min_length=8, max_length=200)]


class AgentJoinBody(Checked, kw_only=True, forbid_unknown_fields=True):
    """A box joins: its join token, the address its agent answers on, its name and GPU."""

    token: Secret
    url: Annotated[str, Meta(max_length=500, pattern=r"^https?://")]
    name: Annotated[str, Meta(min_length=1, max_length=100)]
    gpu_name: Text = ""


class AgentJoined(msgspec.Struct, kw_only=True):
    """What a joined box needs: its node id, its secret (callers must send it), heartbeat period, models."""

    node_id: str
    secret: str
    heartbeat_s: float
    models: list[str] = []


class AgentHeartbeatBody(Checked, kw_only=True, forbid_unknown_fields=True):
    """A joined box is alive."""

    token: Secret
    node_id: Id


class HeartbeatResult(msgspec.Struct, kw_only=True):
    """Heartbeat taken."""

    ok: bool


class PrewarmResult(msgspec.Struct, kw_only=True):
    """The instances being rented."""

    instance_ids: list[str]


class TerminateResult(msgspec.Struct, kw_only=True):
    """Whether a termination was started (False: it already was)."""

    terminating: bool


class SafeModeResult(msgspec.Struct, kw_only=True):
    """Safe mode after the request."""

    safe_mode: bool


class ResetResult(msgspec.Struct, kw_only=True):
    """What the reset did."""

    reset: bool
    pending_rentals_given_up: int = 0


class PolicyBody(Checked, kw_only=True, forbid_unknown_fields=True):
    """The warm-pool policy to apply (null: back to min_size and idle_timeout_s alone), and why."""

    policy: PolicySpec | None = None
    reason: Annotated[str, Meta(max_length=500)] = ""


class SimulateBody(Checked, kw_only=True, forbid_unknown_fields=True):
    """Replay the pool's last ``days`` of demand against ``policies`` (default: the built-in candidates)."""

    days: Annotated[float, Meta(gt=0, le=60)] = 14.0
    policies: Annotated[list[PolicySpec], Meta(max_length=30)] = []
    target_p95: Annotated[float, Meta(ge=0, le=86400)] | None = None
