"""Generation context events: a job from request to stored output, muses (saved characters).

Aggregates: ``ev.gen.job.<job id>`` (one job: its lifecycle, charge, webhook attempts and the
gallery tags of its outputs) and ``ev.gen.muse.<muse id>`` (one saved character).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec

from .base import Event

JOB = "job"
MUSE = "muse"


class Output(msgspec.Struct, frozen=True, kw_only=True):
    """One stored output file (in the JetStream object store)."""

    object_name: str
    filename: str
    content_type: str
    size: int
    sha256: str
    node_id: str = ""


# --- job aggregate ----------------------------------------------------------------

class GenerationRequested(Event, frozen=True, kw_only=True):
    """A user asked for a generation from a template or their own workflow.

    ``prompt`` is the exact API-format workflow the worker runs (template bound with the
    parameters and muse); ``uploads`` maps a ComfyUI input filename to the object-store
    object uploaded under that name before the prompt is posted (img2img, references).
    """

    user_id: str
    template: str | None = None
    workflow: dict[str, Any] | None = None
    params: dict[str, Any] = {}
    muse_id: str | None = None
    idempotency_key: str | None = None
    webhook_url: str | None = None
    estimated_cost: float = 0.0
    prompt: dict[str, Any] = {}
    uploads: dict[str, str] = {}
    checkpoint: str | None = None
    preset: str | None = None
    expected_seconds: float = 0.0
    work_units: float = 0.0


class GenerationQueued(Event, frozen=True, kw_only=True):
    """The job's work-queue message was stored (``seq`` in the JOBS stream)."""

    seq: int


class GenerationClaimed(Event, frozen=True, kw_only=True):
    """A worker holds an instance for this attempt and chose the ComfyUI prompt and client ids."""

    instance_id: str
    lease_id: str
    base_url: str
    prompt_id: str
    client_id: str
    attempt: int = 1
    dph: float = 0.0
    gpu_name: str = ""


class GenerationStarted(Event, frozen=True, kw_only=True):
    """ComfyUI accepted the job's prompt on a claimed instance."""

    instance_id: str
    prompt_id: str
    lease_id: str = ""
    attempt: int = 1


class GenerationAttemptLost(Event, frozen=True, kw_only=True):
    """The instance of an attempt went away (or stopped answering); the job tries another."""

    instance_id: str
    attempt: int
    message: str


class GenerationCancelRequested(Event, frozen=True, kw_only=True):
    """Someone asked to stop a running job; its worker interrupts it on the host."""

    reason: str = "cancelled"


class GenerationCompleted(Event, frozen=True, kw_only=True):
    """The job finished and its outputs are stored."""

    prompt_id: str
    outputs: tuple[Output, ...] = ()
    cost: float = 0.0
    seconds: float = 0.0
    attempt: int = 1
    node_errors: dict[str, Any] = {}  # branches ComfyUI refused while it ran the others


class GenerationCharged(Event, frozen=True, kw_only=True):
    """The user is charged for a completed job (appended atomically with the completion)."""

    user_id: str
    amount: float
    currency: str = "USD"
    seconds: float = 0.0
    dph: float = 0.0
    instance_id: str = ""


class GenerationFailed(Event, frozen=True, kw_only=True):
    """The job failed, with a reason a person can act on."""

    reason: str  # validation, execution_error, instance_lost, timeout, cancelled, interrupted
    message: str
    node_errors: dict[str, Any] = {}
    cost: float = 0.0
    node_id: str | None = None
    node_type: str | None = None


class WebhookAttempted(Event, frozen=True, kw_only=True):
    """One webhook delivery attempt and its outcome."""

    attempt: int
    url: str
    event: str  # "generation.completed" | "generation.failed"
    delivered: bool
    status: int = 0
    error: str = ""
    next_attempt_at: datetime | None = None


class WebhookAbandoned(Event, frozen=True, kw_only=True):
    """Every attempt failed; the webhook is given up."""

    attempts: int
    last_error: str = ""


class OutputTagged(Event, frozen=True, kw_only=True):
    """The owner set the gallery tags of one output (the full resulting set)."""

    object_name: str
    tags: tuple[str, ...] = ()


class OutputDeleted(Event, frozen=True, kw_only=True):
    """The owner removed one output from the gallery (its bytes are deleted too)."""

    object_name: str


# --- muse aggregate ----------------------------------------------------------------

class MuseVariation(msgspec.Struct, frozen=True, kw_only=True):
    """A named variant of a muse: attribute overrides per group and extra prompt text."""

    name: str
    attributes: dict[str, dict[str, str]] = {}
    prompt_suffix: str = ""


class MuseSpec(msgspec.Struct, frozen=True, kw_only=True):
    """A saved character: attribute groups, prompt template, defaults for generation."""

    name: str
    basics: dict[str, str] = {}
    body: dict[str, str] = {}
    face: dict[str, str] = {}
    hair: dict[str, str] = {}
    style: dict[str, str] = {}
    personality: dict[str, str] = {}
    prompt_template: str = "{prompt}, {basics}, {face}, {hair}, {body}, {style}"
    negative_prompt: str = ""
    checkpoint: str | None = None
    reference_images: tuple[str, ...] = ()
    variations: tuple[MuseVariation, ...] = ()


class MuseCreated(Event, frozen=True, kw_only=True):
    """A user saved a new muse (``source``: api or import)."""

    user_id: str
    muse: MuseSpec
    source: str = "api"


class MuseUpdated(Event, frozen=True, kw_only=True):
    """The muse was changed (the full resulting spec)."""

    muse: MuseSpec


class MuseDeleted(Event, frozen=True, kw_only=True):
    """The muse was deleted."""


GenerationEvent = (
    GenerationRequested | GenerationStarted | GenerationCompleted | GenerationFailed
    | GenerationQueued | GenerationClaimed | GenerationAttemptLost | GenerationCancelRequested
    | GenerationCharged | WebhookAttempted | WebhookAbandoned | OutputTagged | OutputDeleted
    | MuseCreated | MuseUpdated | MuseDeleted
)
