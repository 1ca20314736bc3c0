"""Pool context events: configuration and every step of a rented instance's life.

Aggregates: ``ev.pool.config.<pool id>`` (configuration, safe mode, reset) and
``ev.pool.instance.<instance id>`` (one rental, from request to termination).
"""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar, Literal

import msgspec

from .base import Event

INSTANCE = "instance"
CONFIG = "config"

TerminationReason = Literal[
    "idle", "safe_mode", "admin", "extraction_failed", "probe_timeout", "budget",
    "orphan", "lease_expired", "provider_lost", "rent_failed", "reset",
]
FailureKind = Literal["extraction", "pull", "start", "probe_timeout", "vanished"]


class OfferFilter(msgspec.Struct, frozen=True, kw_only=True):
    """Which marketplace offers the pool may rent."""

    gpu_names: tuple[str, ...] = ("RTX 4090", "RTX 3090", "L40S", "A100 SXM4")
    max_dph: float = 1.0
    min_disk_gb: float = 250.0
    min_direct_ports: int = 2
    min_reliability: float = 0.95
    verified_only: bool = True


class InstanceTemplate(msgspec.Struct, frozen=True, kw_only=True):
    """How an instance is launched. Model tokens are referenced by env name, never stored."""

    image: str = "vastai/comfy:latest"
    disk_gb: float = 250.0
    ports: tuple[int, ...] = (8188, 22)
    onstart: str = "bash /opt/stoker/start-comfyui.sh"
    models: tuple[str, ...] = ()  # model URLs (Hugging Face / Civitai) downloaded at start
    token_env: tuple[str, ...] = ("HF_TOKEN", "CIVITAI_TOKEN")


class Readiness(msgspec.Struct, frozen=True, kw_only=True):
    """When an instance counts as Ready."""

    probe_timeout_s: float = 600.0
    probe_initial_backoff_s: float = 2.0
    probe_max_backoff_s: float = 30.0
    required_models: tuple[str, ...] = ()
    warmup_workflow: dict[str, object] | None = None


class SpendCaps(msgspec.Struct, frozen=True, kw_only=True):
    """Spend limits; reaching one forces safe mode. None = no cap."""

    max_dph: float | None = None
    max_per_day: float | None = None


class PoolConfig(msgspec.Struct, frozen=True, kw_only=True):
    """The whole desired configuration of a pool.

    ``min_size`` instances are always kept, even idle. Anything above it (a prewarm, an instance
    rented for waiting jobs, a policy's prewarm) is a demand instance: it ends after
    ``idle_timeout_s`` without use. ``desired_size`` is the old name of ``min_size``: events written
    before ``min_size`` existed decode with ``min_size = desired_size``, and the two are kept equal.
    """

    min_size: int | None = None  # None only while decoding an old event; always an int after
    desired_size: int = 0
    max_size: int = 4
    idle_timeout_s: float = 900.0
    lease_max_s: float = 1800.0
    offer_filter: OfferFilter = OfferFilter()
    template: InstanceTemplate = InstanceTemplate()
    readiness: Readiness = Readiness()
    spend_caps: SpendCaps = SpendCaps()

    def __post_init__(self) -> None:
        if self.min_size is None:
            msgspec.structs.force_setattr(self, "min_size", self.desired_size)
        elif self.desired_size != self.min_size:
            msgspec.structs.force_setattr(self, "desired_size", self.min_size)

    @property
    def floor(self) -> int:
        """Instances always kept (``min_size``)."""
        return self.min_size if self.min_size is not None else self.desired_size


class Offer(msgspec.Struct, frozen=True, kw_only=True):
    """The marketplace offer a rental was made from."""

    offer_id: str
    gpu_name: str
    num_gpus: int = 1
    dph: float
    host_id: str
    machine_id: str
    disk_gb: float = 0.0
    reliability: float = 0.0


# --- config aggregate -------------------------------------------------------------

class PoolConfigured(Event, frozen=True, kw_only=True):
    """The pool's configuration was set (the full resulting config)."""

    SCHEMA: ClassVar[int] = 2  # 2: PoolConfig.min_size
    pool_id: str
    config: PoolConfig


class SafeModeChanged(Event, frozen=True, kw_only=True):
    """Safe mode was turned on or off, and why (``admin``, ``budget_dph``, ``budget_day``)."""

    pool_id: str
    enabled: bool
    reason: str
    detail: str = ""


class PoolReset(Event, frozen=True, kw_only=True):
    """An operator reset the pool's transient state (pending prewarms, stuck requests)."""

    pool_id: str
    reason: str = ""


class PrewarmRequested(Event, frozen=True, kw_only=True):
    """An operator asked for instances beyond the desired size, now."""

    pool_id: str
    count: int


# --- instance aggregate -----------------------------------------------------------

class RentRequested(Event, frozen=True, kw_only=True):
    """The pool decided to rent an offer; the idempotency key guards the provider call."""

    pool_id: str
    idempotency_key: str
    offer: Offer
    provider: str
    label: str


class InstanceRented(Event, frozen=True, kw_only=True):
    """The provider accepted the rental: the instance now bills."""

    pool_id: str
    provider: str
    provider_id: str
    offer: Offer
    dph: float
    label: str


class RentFailed(Event, frozen=True, kw_only=True):
    """The provider refused the rental; nothing bills."""

    pool_id: str
    message: str


class InstanceStatusChanged(Event, frozen=True, kw_only=True):
    """The provider reported a new status (``actual_status``, ``status_msg``)."""

    pool_id: str
    actual_status: str | None
    status_msg: str | None = None


class ExtractionFailed(Event, frozen=True, kw_only=True):
    """The host failed to start the image (e.g. no space left while extracting)."""

    pool_id: str
    kind: FailureKind
    status_msg: str
    host_id: str
    machine_id: str


class Ready(Event, frozen=True, kw_only=True):
    """ComfyUI answers and has every required model: the instance can be claimed."""

    pool_id: str
    base_url: str
    models: tuple[str, ...] = ()


class ProbeFailed(Event, frozen=True, kw_only=True):
    """The readiness probe gave up (timeout); the instance will be terminated."""

    pool_id: str
    reason: str
    host_id: str = ""
    machine_id: str = ""


class Claimed(Event, frozen=True, kw_only=True):
    """A client took the instance under a lease."""

    pool_id: str
    lease_id: str
    holder: str
    expires_at: datetime
    checkpoint: str | None = None


class LeaseRenewed(Event, frozen=True, kw_only=True):
    """The lease holder extended its lease."""

    pool_id: str
    lease_id: str
    expires_at: datetime


class Released(Event, frozen=True, kw_only=True):
    """The lease ended (``released`` by its holder or ``lease_expired``); the instance is free again."""

    pool_id: str
    lease_id: str
    reason: Literal["released", "lease_expired"] = "released"


class TerminateRequested(Event, frozen=True, kw_only=True):
    """The pool decided to destroy the instance."""

    pool_id: str
    reason: TerminationReason
    detail: str = ""


class Terminated(Event, frozen=True, kw_only=True):
    """The provider confirmed the instance is gone: it no longer bills."""

    pool_id: str
    reason: TerminationReason
    provider_id: str = ""
    detail: str = ""


class OrphanFound(Event, frozen=True, kw_only=True):
    """A tagged instance the pool did not know was found at the provider."""

    pool_id: str
    provider: str
    provider_id: str
    label: str
    dph: float = 0.0


# --- warm-pool policy (config aggregate) -------------------------------------------

PolicyKind = Literal["fixed", "seed", "reactive", "queue_depth", "histogram", "time_of_week", "schedule", "adaptive"]


class ScheduleWindow(msgspec.Struct, frozen=True, kw_only=True):
    """Keep ``keep`` instances on ``days`` (0 = Monday) from ``start_hour`` to ``end_hour`` (UTC)."""

    days: tuple[int, ...] = (0, 1, 2, 3, 4)
    start_hour: float = 9.0
    end_hour: float = 18.0
    keep: int = 1


class PolicySpec(msgspec.Struct, frozen=True, kw_only=True):
    """A warm-pool policy and its parameters (see services/pool/policies/ for what each means)."""

    kind: PolicyKind = "seed"
    params: dict[str, float] = {}
    windows: tuple[ScheduleWindow, ...] = ()


class PolicyApplied(Event, frozen=True, kw_only=True):
    """An operator chose the pool's warm-pool policy (None: back to min_size and idle_timeout_s only)."""

    pool_id: str
    policy: PolicySpec | None
    reason: str = ""


class PolicyDecided(Event, frozen=True, kw_only=True):
    """The live policy changed how many instances it keeps warm, and says why."""

    pool_id: str
    policy: str
    keep: int
    idle_timeout_s: float
    reason: str


PoolEvent = (
    PoolConfigured | SafeModeChanged | PoolReset | PrewarmRequested | RentRequested
    | InstanceRented | RentFailed | InstanceStatusChanged | ExtractionFailed | Ready
    | ProbeFailed | Claimed | LeaseRenewed | Released | TerminateRequested | Terminated
    | OrphanFound | PolicyApplied | PolicyDecided
)
