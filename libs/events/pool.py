"""Pool context events: configuration and every step of a rented instance's life.

Aggregates: ``ev.pool.config.<pool id>`` (configuration, safe mode, reset, problems) and
``ev.pool.instance.<instance id>`` (one rental, from request to termination).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, ClassVar, Literal

import msgspec
from msgspec import Meta

from .base import Event

INSTANCE = "instance"
CONFIG = "config"
ALERT = "alert"  # one aggregate per alerted event (id = that event's id): its delivery attempts
NODE = "node"  # one of your own GPU boxes that joined with a join token (id = node id)
JOIN_TOKEN = "join_token"  # one join token (id = token id)

TerminationReason = Literal[
    "idle", "safe_mode", "admin", "extraction_failed", "probe_timeout", "budget",
    "orphan", "lease_expired", "provider_lost", "rent_failed", "reset", "agent_failed",
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
    # 0 rents nothing from the marketplace (your own joined boxes, at their price, still match)
    max_dph: Annotated[float, Meta(ge=0, le=100_000)] = 1.0
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

# Starts the Stoker agent on a stock image: install it unless the image has it (deploy/instance/Dockerfile
# does), then run it in the background; it installs the pinned ComfyUI when the image has none.
# The pool puts STOKER_AGENT_PACKAGE (a pip requirement), STOKER_MODELS and the instance secret in the env.
AGENT_ONSTART = (
    "mkdir -p /var/log/stoker; command -v stoker >/dev/null || "
    "pip install -q \"${STOKER_AGENT_PACKAGE:-stoker}\" >>/var/log/stoker/install.log 2>&1; "
    "nohup stoker agent >>/var/log/stoker/agent.log 2>&1 &"
)


class InstanceTemplate(msgspec.Struct, frozen=True, kw_only=True):
    """How an instance is launched. Model tokens are referenced by env name, never stored."""

    image: Annotated[str, Meta(pattern=r"^[^\s\x00-\x1f\x7f]{1,512}$", description="a container image reference (no spaces)")] = (
        "pytorch/pytorch:2.5.1-cuda12.4-cudnn9-runtime")
    disk_gb: DiskGb = 250.0
    ports: Annotated[tuple[Port, ...], Meta(max_length=32)] = (8188, 22)
    onstart: Script = AGENT_ONSTART
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
    """The whole desired configuration of a pool.

    ``min_size`` instances are always kept, even idle. Anything above it (a prewarm, an instance
    rented for waiting jobs, a policy's prewarm) is a demand instance: it ends after
    ``idle_timeout_s`` without use. ``desired_size`` is the old name of ``min_size``: events written
    before ``min_size`` existed decode with ``min_size = desired_size``, and the two are kept equal.
    """

    min_size: Size | None = None  # None only while decoding an old event; always an int after
    desired_size: Size = 0
    max_size: Size = 4
    idle_timeout_s: Seconds = 900.0
    lease_max_s: Seconds = 1800.0
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


class Problem(msgspec.Struct, frozen=True, kw_only=True):
    """Something that keeps a pool from doing what it is configured to do (shown in GET /api/v1/pool)."""

    code: str  # stable: provider_auth, provider_unreachable, no_offers, rent_refused, ...
    message: str
    since: datetime


# --- config aggregate -------------------------------------------------------------

class ProblemRaised(Event, frozen=True, kw_only=True):
    """The reconciler hit a problem it cannot solve alone (e.g. the provider refuses the key)."""

    pool_id: str
    code: str
    message: str


class AlertAttempted(Event, frozen=True, kw_only=True):
    """The admin alert webhook was called about an event (``ok``: it answered 2xx)."""

    pool_id: str
    kind: str  # extraction_failed, probe_timeout, spend_cap, safe_mode, provider_auth, node_lost
    instance_id: str = ""
    attempt: int = 1
    ok: bool = False
    status: int | None = None
    error: str = ""


class JoinTokenCreated(Event, frozen=True, kw_only=True):
    """An admin made a join token for own GPU boxes; only its SHA-256 is kept (the token is shown once)."""

    pool_id: str
    token_sha256: str
    label: str = ""
    dph: float = 0.0  # what an hour of a box joined with it costs (for budgets and usage)


class JoinTokenRevoked(Event, frozen=True, kw_only=True):
    """The join token no longer admits boxes, and boxes joined with it stop being used."""

    pool_id: str


class NodeJoined(Event, frozen=True, kw_only=True):
    """A box running ``stoker agent --join`` joined the pool (again, when it already had)."""

    pool_id: str
    token_id: str
    name: str
    url: str  # where its agent answers (with the node's secret)
    gpu_name: str = ""


class ProblemCleared(Event, frozen=True, kw_only=True):
    """A problem went away."""

    pool_id: str
    code: str


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
    ssh_host: str = ""
    ssh_port: int = 0


class AgentReported(Event, frozen=True, kw_only=True):
    """The host's agent reported a new phase or progress, or probing it failed in a new way.

    ``phase`` is the agent's (booting, downloading, starting_comfyui, ready, failed) or ``unreachable``
    while the agent does not answer; ``probe_error`` is the last probe error ("" when the probe worked).
    """

    pool_id: str
    phase: str
    reason: str = ""
    bytes_done: int = 0
    bytes_total: int | None = None
    comfyui_version: str = ""
    probe_error: str = ""
    base_url: str = ""  # where the agent answers (not a secret: nothing there answers without one)


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
    | InstanceRented | RentFailed | InstanceStatusChanged | AgentReported | ExtractionFailed | Ready
    | ProbeFailed | Claimed | LeaseRenewed | Released | TerminateRequested | Terminated
    | OrphanFound | ProblemRaised | ProblemCleared | AlertAttempted | JoinTokenCreated | JoinTokenRevoked
    | NodeJoined | PolicyApplied | PolicyDecided
)
