"""Pool context events: configuration and every step of a rented instance's life.

Aggregates: ``ev.pool.config.<pool id>`` (configuration, safe mode, reset, problems) and
``ev.pool.instance.<instance id>`` (one rental, from request to termination).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from .base import Event

INSTANCE = "instance"
CONFIG = "config"

TerminationReason = Literal[
    "idle", "safe_mode", "admin", "extraction_failed", "probe_timeout", "budget",
    "orphan", "lease_expired", "provider_lost", "rent_failed", "reset",
]
FailureKind = Literal["extraction", "pull", "start", "probe_timeout", "vanished"]

# Bounds of the configuration (checked where a configuration is parsed: the gateway and the pool).
WEEK_S = 7 * 24 * 3600.0
Name = Annotated[str, Meta(pattern=r"^[^\x00-\x1f\x7f]{1,128}$", description="1-128 characters, no control characters")]
Word = Annotated[str, Meta(pattern=r"^[^\s\x00-\x1f\x7f]{1,2048}$", description="no spaces or control characters")]
Script = Annotated[str, Meta(pattern=r"^[^\x00-\x08\x0b-\x1f\x7f]*$", max_length=8000,
                             description="a shell command line (line breaks and tabs allowed)")]
Dollars = Annotated[float, Meta(gt=0, le=100_000)]
DiskGb = Annotated[float, Meta(gt=0, le=100_000)]
Seconds = Annotated[float, Meta(gt=0, le=WEEK_S)]
Size = Annotated[int, Meta(ge=0, le=1000)]
Port = Annotated[int, Meta(ge=1, le=65535)]
EnvName = Annotated[str, Meta(pattern=r"^[A-Z_][A-Z0-9_]{0,63}$")]


class OfferFilter(msgspec.Struct, frozen=True, kw_only=True):
    """Which marketplace offers the pool may rent."""

    gpu_names: Annotated[tuple[Name, ...], Meta(max_length=64)] = ("RTX 4090", "RTX 3090", "L40S", "A100 SXM4")
    max_dph: Dollars = 1.0
    min_disk_gb: Annotated[float, Meta(ge=0, le=100_000)] = 250.0
    min_direct_ports: Annotated[int, Meta(ge=0, le=64)] = 2
    min_reliability: Annotated[float, Meta(ge=0, le=1)] = 0.95
    verified_only: bool = True


# What the built-in templates (services/generation/templates/*.json) load: the Stable Diffusion 1.5 checkpoint
# (its VAE is inside it). A fresh pool downloads it, so a template job works on a fresh `stoker up`.
DEFAULT_CHECKPOINT = "v1-5-pruned-emaonly.safetensors"
DEFAULT_MODELS = (
    f"https://huggingface.co/stable-diffusion-v1-5/stable-diffusion-v1-5/resolve/main/{DEFAULT_CHECKPOINT}",
)


class InstanceTemplate(msgspec.Struct, frozen=True, kw_only=True):
    """How an instance is launched. Model tokens are referenced by env name, never stored."""

    image: Annotated[str, Meta(pattern=r"^[^\s\x00-\x1f\x7f]{1,512}$",
                               description="a container image reference (no spaces)")] = "vastai/comfy:latest"
    disk_gb: DiskGb = 250.0
    ports: Annotated[tuple[Port, ...], Meta(max_length=32)] = (8188, 22)
    onstart: Script = "bash /opt/stoker/start-comfyui.sh"
    # model URLs (Hugging Face / Civitai) downloaded at start
    models: Annotated[tuple[Word, ...], Meta(max_length=100)] = DEFAULT_MODELS
    token_env: Annotated[tuple[EnvName, ...], Meta(max_length=16)] = ("HF_TOKEN", "CIVITAI_TOKEN")


class Readiness(msgspec.Struct, frozen=True, kw_only=True):
    """When an instance counts as Ready."""

    probe_timeout_s: Seconds = 600.0
    probe_initial_backoff_s: Annotated[float, Meta(gt=0, le=3600)] = 2.0
    probe_max_backoff_s: Annotated[float, Meta(gt=0, le=3600)] = 30.0
    required_models: Annotated[tuple[Name, ...], Meta(max_length=100)] = (DEFAULT_CHECKPOINT,)  # Ready only once loaded
    warmup_workflow: dict[str, object] | None = None


class SpendCaps(msgspec.Struct, frozen=True, kw_only=True):
    """Spend limits; reaching one forces safe mode. None = no cap."""

    max_dph: Dollars | None = None  # > 0: a cap of 0 or less would end every rental at once
    max_per_day: Dollars | None = None


class PoolConfig(msgspec.Struct, frozen=True, kw_only=True):
    """The whole desired configuration of a pool."""

    desired_size: Size = 0
    max_size: Size = 4
    idle_timeout_s: Seconds = 900.0
    lease_max_s: Seconds = 1800.0
    offer_filter: OfferFilter = OfferFilter()
    template: InstanceTemplate = InstanceTemplate()
    readiness: Readiness = Readiness()
    spend_caps: SpendCaps = SpendCaps()


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


class PoolProblem(msgspec.Struct, frozen=True, kw_only=True):
    """Something that keeps the pool from doing what it is configured to do, shown in the pool summary.

    ``code`` is stable (e.g. ``hosts_avoided``, ``no_offers``); ``since`` is when it was first raised.
    """

    code: str
    message: str
    since: datetime


class ProblemRaised(Event, frozen=True, kw_only=True):
    """The pool found a problem (raising a code again updates its message and keeps its ``since``)."""

    pool_id: str
    code: str
    message: str


class ProblemCleared(Event, frozen=True, kw_only=True):
    """A problem went away."""

    pool_id: str
    code: str


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


PoolEvent = (
    PoolConfigured | SafeModeChanged | PoolReset | ProblemRaised | ProblemCleared | PrewarmRequested | RentRequested
    | InstanceRented | RentFailed | InstanceStatusChanged | ExtractionFailed | Ready
    | ProbeFailed | Claimed | LeaseRenewed | Released | TerminateRequested | Terminated
    | OrphanFound
)
