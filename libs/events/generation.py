"""Generation context events: a job from request to stored output.

Aggregate: ``ev.gen.job.<job id>``.
"""

from __future__ import annotations

from typing import Any

import msgspec

from .base import Event

JOB = "job"


class Output(msgspec.Struct, frozen=True, kw_only=True):
    """One stored output file (in the JetStream object store)."""

    object_name: str
    filename: str
    content_type: str
    size: int
    sha256: str


class GenerationRequested(Event, frozen=True, kw_only=True):
    """A user asked for a generation from a template or their own workflow."""

    user_id: str
    template: str | None = None
    workflow: dict[str, Any] | None = None
    params: dict[str, Any] = {}
    muse_id: str | None = None
    idempotency_key: str | None = None
    webhook_url: str | None = None
    estimated_cost: float = 0.0


class GenerationStarted(Event, frozen=True, kw_only=True):
    """ComfyUI accepted the job's prompt on a claimed instance."""

    instance_id: str
    prompt_id: str
    lease_id: str = ""


class GenerationCompleted(Event, frozen=True, kw_only=True):
    """The job finished and its outputs are stored."""

    prompt_id: str
    outputs: tuple[Output, ...] = ()
    cost: float = 0.0
    seconds: float = 0.0


class GenerationFailed(Event, frozen=True, kw_only=True):
    """The job failed, with a reason a person can act on."""

    reason: str  # validation, execution_error, instance_lost, timeout, cancelled
    message: str
    node_errors: dict[str, Any] = {}
    cost: float = 0.0


GenerationEvent = GenerationRequested | GenerationStarted | GenerationCompleted | GenerationFailed
