"""One rented instance: its state, how events change it, and what commands on it decide.

Pure: no I/O, no clock reads. ``evolve`` is the only way an instance's state changes.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Literal

import msgspec

from libs.events import NEW, Position
from libs.events import pool as ev
from libs.events.base import Event

Phase = Literal["renting", "loading", "ready", "claimed", "terminating", "terminated", "failed"]
LIVE_PHASES = frozenset({"renting", "loading", "ready", "claimed"})
# Phases in which the provider may be billing us.
BILLING_PHASES = frozenset({"loading", "ready", "claimed", "terminating"})


class Lease(msgspec.Struct, frozen=True, kw_only=True):
    """Who holds a claimed instance and until when."""

    lease_id: str
    holder: str
    expires_at: datetime
    checkpoint: str | None = None


class Instance(msgspec.Struct, frozen=True, kw_only=True):
    """The pool's knowledge of one rental, folded from its events."""

    id: str
    pool_id: str
    phase: Phase = "renting"
    position: Position = NEW
    provider: str = ""
    provider_id: str = ""
    label: str = ""
    idempotency_key: str = ""
    offer: ev.Offer | None = None
    dph: float = 0.0
    actual_status: str | None = None
    status_msg: str | None = None
    base_url: str | None = None
    models: tuple[str, ...] = ()
    lease: Lease | None = None
    requested_at: datetime | None = None
    rented_at: datetime | None = None
    ready_at: datetime | None = None
    last_used_at: datetime | None = None
    phase_since: datetime | None = None
    terminate_reason: str | None = None
    terminate_requested_at: datetime | None = None
    terminated_at: datetime | None = None
    failure: str | None = None
    cost_by_phase: dict[str, float] = {}
    claims: int = 0
    ssh_host: str = ""
    ssh_port: int = 0
    agent_phase: str = ""  # what the host's agent last said (booting, downloading, …), "" before it answered
    agent_reason: str = ""
    bytes_done: int = 0
    bytes_total: int | None = None
    comfyui_version: str = ""
    probe_error: str = ""


class PoolError(Exception):
    """A command the pool refuses; ``code`` is stable for API clients."""

    code = "CONFLICT"

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        if code:
            self.code = code


def _settle(inst: Instance, at: datetime) -> dict[str, float]:
    """Close the cost bucket of the current phase up to ``at``."""
    costs = dict(inst.cost_by_phase)
    if inst.phase in BILLING_PHASES and inst.phase_since is not None and inst.dph:
        bucket = cost_bucket(inst)
        seconds = max(0.0, (at - inst.phase_since).total_seconds())
        costs[bucket] = costs.get(bucket, 0.0) + inst.dph * seconds / 3600.0
    return costs


def cost_bucket(inst: Instance) -> str:
    """The cost category of the instance's current phase: loading, idle, busy, failed, terminating."""
    if inst.phase == "ready":
        return "idle"
    if inst.phase == "claimed":
        return "busy"
    if inst.failure and inst.phase in ("loading", "terminating"):
        return "failed"
    return inst.phase


def _to(inst: Instance, phase: Phase, at: datetime, **changes: object) -> Instance:
    return msgspec.structs.replace(inst, phase=phase, phase_since=at, cost_by_phase=_settle(inst, at),
                                   **changes)


def evolve(inst: Instance, event: object, at: datetime) -> Instance:
    """Apply one event (that happened at ``at``) to an instance."""
    match event:
        case ev.RentRequested():
            return msgspec.structs.replace(inst, phase="renting", provider=event.provider, label=event.label,
                                           idempotency_key=event.idempotency_key, offer=event.offer,
                                           requested_at=at, phase_since=at, dph=event.offer.dph)
        case ev.InstanceRented():
            # A rental that completes after termination was requested stays on its way out.
            phase: Phase = "terminating" if inst.phase == "terminating" else "loading"
            return _to(inst, phase, at, provider=event.provider, provider_id=event.provider_id,
                       offer=event.offer, dph=event.dph, label=event.label, rented_at=at)
        case ev.OrphanFound():
            return _to(inst, "terminating", at, provider=event.provider, provider_id=event.provider_id,
                       label=event.label, dph=event.dph, rented_at=at, terminate_reason="orphan",
                       terminate_requested_at=at)
        case ev.RentFailed():
            return _to(inst, "failed", at, failure=event.message, terminated_at=at)
        case ev.InstanceStatusChanged():
            return msgspec.structs.replace(inst, actual_status=event.actual_status, status_msg=event.status_msg,
                                           ssh_host=event.ssh_host or inst.ssh_host,
                                           ssh_port=event.ssh_port or inst.ssh_port)
        case ev.AgentReported():
            return msgspec.structs.replace(inst, agent_phase=event.phase, agent_reason=event.reason,
                                           bytes_done=event.bytes_done, bytes_total=event.bytes_total,
                                           comfyui_version=event.comfyui_version or inst.comfyui_version,
                                           probe_error=event.probe_error, base_url=event.base_url or inst.base_url,
                                           failure=event.reason if event.phase == "failed" else inst.failure)
        case ev.ExtractionFailed():
            return msgspec.structs.replace(inst, failure=event.kind, status_msg=event.status_msg,
                                           cost_by_phase=_settle(inst, at), phase_since=at)
        case ev.ProbeFailed():
            return msgspec.structs.replace(inst, failure="probe_timeout", cost_by_phase=_settle(inst, at),
                                           phase_since=at)
        case ev.Ready():
            return _to(inst, "ready", at, base_url=event.base_url, models=event.models, ready_at=at,
                       last_used_at=at)
        case ev.Claimed():
            lease = Lease(lease_id=event.lease_id, holder=event.holder, expires_at=event.expires_at,
                          checkpoint=event.checkpoint)
            return _to(inst, "claimed", at, lease=lease, last_used_at=at, claims=inst.claims + 1)
        case ev.LeaseRenewed():
            if inst.lease is None:
                return inst
            return msgspec.structs.replace(inst, lease=msgspec.structs.replace(inst.lease, expires_at=event.expires_at),
                                           last_used_at=at)
        case ev.Released():
            if inst.phase != "claimed":
                return msgspec.structs.replace(inst, lease=None)
            return _to(inst, "ready", at, lease=None, last_used_at=at)
        case ev.TerminateRequested():
            if inst.phase in ("terminated", "failed"):
                return inst
            return _to(inst, "terminating", at, terminate_reason=event.reason, terminate_requested_at=at,
                       lease=None)
        case ev.Terminated():
            return _to(inst, "terminated", at, terminate_reason=inst.terminate_reason or event.reason,
                       terminated_at=at, lease=None)
    return inst


def accrued(inst: Instance, now: datetime) -> dict[str, float]:
    """Cost per phase bucket so far, including the running phase up to ``now``."""
    if inst.phase in ("terminated", "failed"):
        return dict(inst.cost_by_phase)
    return _settle(inst, now)


def is_billing(inst: Instance) -> bool:
    """Whether the provider may be charging for this instance now."""
    return inst.phase in BILLING_PHASES or (inst.phase == "renting" and bool(inst.provider_id))


# --- decisions on one instance -----------------------------------------------------

def decide_claim(inst: Instance, *, lease_id: str, holder: str, lease_s: float, lease_max_s: float,
                 checkpoint: str | None, now: datetime) -> list[Event]:
    """Claim a Ready instance for ``holder`` under a lease capped at the pool's maximum."""
    if inst.phase != "ready":
        raise PoolError(f"instance {inst.id} is {inst.phase}, not ready")
    seconds = min(max(lease_s, 1.0), lease_max_s)
    return [ev.Claimed(pool_id=inst.pool_id, lease_id=lease_id, holder=holder,
                       expires_at=now + timedelta(seconds=seconds), checkpoint=checkpoint)]


def decide_release(inst: Instance, lease_id: str, *, expired: bool = False) -> list[Event]:
    """Release a lease; releasing a lease that already ended is a no-op (idempotent)."""
    if inst.lease is None or inst.lease.lease_id != lease_id:
        return []
    return [ev.Released(pool_id=inst.pool_id, lease_id=lease_id,
                        reason="lease_expired" if expired else "released")]


def decide_renew(inst: Instance, lease_id: str, *, lease_s: float, lease_max_s: float,
                 now: datetime) -> list[Event]:
    """Extend a held lease (capped at the pool's maximum lease from now)."""
    if inst.lease is None or inst.lease.lease_id != lease_id:
        raise PoolError(f"lease {lease_id} is not held on instance {inst.id}", "NOT_FOUND")
    seconds = min(max(lease_s, 1.0), lease_max_s)
    return [ev.LeaseRenewed(pool_id=inst.pool_id, lease_id=lease_id, expires_at=now + timedelta(seconds=seconds))]


def decide_terminate(inst: Instance, reason: ev.TerminationReason, detail: str = "") -> list[Event]:
    """Ask for termination unless one is already underway or done."""
    if inst.phase in ("terminating", "terminated", "failed"):
        return []
    return [ev.TerminateRequested(pool_id=inst.pool_id, reason=reason, detail=detail)]
