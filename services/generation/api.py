"""The generation service's contract on NATS request/reply (``cmd.gen.<verb>``), and its progress messages.

Every request carries ``actor`` (who acts: ``user:<id>``, ``admin:<fp>``, ``gateway``) and
``user_id`` (whose objects are touched: another user's job, muse or output is NOT_FOUND).
Replies are ``Reply(ok, result)`` or ``Reply(ok=False, error=Error(code, message, details))``
with codes VALIDATION_FAILED, NOT_FOUND, CONFLICT (retry), UNAVAILABLE (retry), INTERNAL.

Verbs (queue group ``gen``), request -> result:

    submit          SubmitRequest        -> SubmitResult (job id, created, cost estimate, JobView)
    estimate        EstimateRequest      -> EstimateResult
    get             GetRequest           -> JobView
    list            ListRequest          -> JobPage (newest first; next_cursor)
    cancel          CancelRequest        -> JobView
    templates       TemplatesRequest     -> {templates: [...], checkpoints: [...], presets, default_preset}
    webhook_secret  WebhookSecretRequest -> {secret, algorithm, signed, headers}
    muse_create     MuseCreateRequest    -> MuseView       muse_update  MuseUpdateRequest -> MuseView
    muse_get        MuseIdRequest        -> MuseView       muse_delete  MuseIdRequest     -> {deleted}
    muse_list       MuseListRequest      -> MusePage       muse_export  MuseIdRequest     -> muse document
    muse_import     MuseImportRequest    -> MuseView
    gallery_list    GalleryListRequest   -> GalleryPage    gallery_tag  GalleryTagRequest -> GalleryItem
    gallery_delete  GalleryDeleteRequest -> {deleted}

Outputs are in the JetStream object store bucket ``stoker-outputs`` (``subjects.OUTPUT_BUCKET``)
named ``gen/<user_id>/<job_id>/<nn>-<filename>``; read the bytes with
``(await js.object_store(OUTPUT_BUCKET)).get(name)``. Step-by-step progress of a job is
published (not stored) on ``progress.gen.<job_id>`` as ``Progress`` JSON; job events are
on ``ev.gen.job.<job_id>`` (a core NATS subscription sees them as they are stored).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec

from libs.events import subjects
from libs.events.generation import MuseSpec, MuseVariation, Output

QUEUE_GROUP = "gen"
for_pool = subjects.scoped  # ``cmd.gen.submit`` -> ``cmd.gen.<pool id>.submit``: each pool's service only


def _cmd(verb: str) -> str:
    return subjects.command(subjects.CMD_GENERATION, verb)


SUBMIT, GET, LIST, CANCEL, ESTIMATE, TEMPLATES = (_cmd(v) for v in ("submit", "get", "list", "cancel", "estimate",
                                                                     "templates"))
MUSE_CREATE, MUSE_UPDATE, MUSE_DELETE, MUSE_GET, MUSE_LIST, MUSE_IMPORT, MUSE_EXPORT = (
    _cmd(v) for v in ("muse_create", "muse_update", "muse_delete", "muse_get", "muse_list", "muse_import",
                      "muse_export"))
GALLERY_LIST, GALLERY_TAG, GALLERY_DELETE = (_cmd(v) for v in ("gallery_list", "gallery_tag", "gallery_delete"))
WEBHOOK_SECRET = _cmd("webhook_secret")


# --- requests ------------------------------------------------------------------------

class Request(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Fields every request carries."""

    actor: str
    user_id: str
    correlation_id: str | None = None


class SubmitRequest(Request, kw_only=True, forbid_unknown_fields=True):
    """Queue a job: a ``template`` with ``params`` (and ``preset``), or your own API-format ``workflow``.

    ``idempotency_key``: a retry with the same key returns the same job. ``webhook_url``
    receives ``generation.completed`` / ``generation.failed``, signed (see ``webhooks.py``).
    """

    template: str | None = None
    params: dict[str, Any] = {}
    preset: str | None = None
    workflow: dict[str, Any] | None = None
    muse_id: str | None = None
    muse_variation: str | None = None
    idempotency_key: str | None = None
    webhook_url: str | None = None


class EstimateRequest(Request, kw_only=True, forbid_unknown_fields=True):
    """What a submit with these fields would cost (nothing is queued)."""

    template: str | None = None
    params: dict[str, Any] = {}
    preset: str | None = None
    workflow: dict[str, Any] | None = None
    muse_id: str | None = None
    muse_variation: str | None = None


class GetRequest(Request, kw_only=True, forbid_unknown_fields=True):
    """One job."""

    job_id: str


class ListRequest(Request, kw_only=True, forbid_unknown_fields=True):
    """The user's jobs, newest first; pass ``next_cursor`` of a page as ``cursor`` for the next."""

    limit: int = 20
    cursor: str | None = None
    status: str | None = None


class CancelRequest(Request, kw_only=True, forbid_unknown_fields=True):
    """Cancel a job: a queued one is removed, a running one is interrupted on its host."""

    job_id: str


class TemplatesRequest(Request, kw_only=True, forbid_unknown_fields=True):
    """Template names, parameters, presets and the checkpoints the pool offers."""


class MuseInput(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A muse as a request gives it (same fields as ``MuseSpec``)."""

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

    def spec(self) -> MuseSpec:
        """The event-side spec."""
        return msgspec.convert(msgspec.to_builtins(self), MuseSpec)


class MuseCreateRequest(Request, kw_only=True, forbid_unknown_fields=True):
    """Save a new muse."""

    muse: MuseInput


class MuseUpdateRequest(Request, kw_only=True, forbid_unknown_fields=True):
    """Replace a muse's fields."""

    muse_id: str
    muse: MuseInput


class MuseIdRequest(Request, kw_only=True, forbid_unknown_fields=True):
    """A request naming one muse (get, delete, export)."""

    muse_id: str


class MuseListRequest(Request, kw_only=True, forbid_unknown_fields=True):
    """The user's muses, oldest first."""

    limit: int = 50
    cursor: str | None = None


class MuseImportRequest(Request, kw_only=True, forbid_unknown_fields=True):
    """Create a muse from an exported document (``{"format": "stoker.muse", "version": 1, "muse": {...}}``)."""

    document: dict[str, Any]


class GalleryListRequest(Request, kw_only=True, forbid_unknown_fields=True):
    """The user's outputs, newest first, optionally only those with ``tag``."""

    limit: int = 50
    cursor: str | None = None
    tag: str | None = None


class GalleryTagRequest(Request, kw_only=True, forbid_unknown_fields=True):
    """Add and remove tags of one output."""

    object_name: str
    add: tuple[str, ...] = ()
    remove: tuple[str, ...] = ()


class GalleryDeleteRequest(Request, kw_only=True, forbid_unknown_fields=True):
    """Delete one output (from the gallery and the object store)."""

    object_name: str


class WebhookSecretRequest(Request, kw_only=True, forbid_unknown_fields=True):
    """The key the user's webhooks are signed with (HMAC-SHA256)."""


# --- results -------------------------------------------------------------------------

class Waiting(msgspec.Struct, kw_only=True):
    """Why a job is not producing yet. ``reason``: behind_jobs, no_instance, renting_instance,
    instance_loading, instances_busy, starting, loading_model; and, when the pool will not rent at all,
    safe_mode, pool_closed (max size 0), cannot_rent (the provider refuses) with no expected wait."""

    reason: str
    message: str
    expected_wait_s: float | None = None
    jobs_ahead: int = 0


class Progress(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One step of a running job (published on ``progress.gen.<job_id>``, latest one kept in the view).

    ``seq`` increases by one per message of an attempt; ``kind`` is started, executing,
    progress or cached.
    """

    job_id: str
    seq: int
    kind: str
    attempt: int = 1
    node: str | None = None
    node_type: str | None = None
    step: int | None = None
    max: int | None = None
    at: float = 0.0


class JobError(msgspec.Struct, kw_only=True):
    """Why a job failed: reason (validation, execution_error, instance_lost, timeout, cancelled,
    interrupted), ComfyUI's message, and its node errors."""

    reason: str
    message: str
    node_errors: dict[str, Any] = {}
    node_id: str | None = None
    node_type: str | None = None


class WebhookStatus(msgspec.Struct, kw_only=True):
    """Where a job's webhook stands: pending, delivered or abandoned."""

    url: str
    state: str
    attempts: int = 0
    last_error: str = ""
    next_attempt_at: datetime | None = None


class Milestone(msgspec.Struct, kw_only=True):
    """One step of a job's life, timed when its event was recorded (queued, claimed, started, attempt_lost,
    cancel_requested, completed, failed, cancelled); ``detail``: the GPU, or why."""

    kind: str
    at: datetime
    detail: str = ""


class JobView(msgspec.Struct, kw_only=True):
    """A job as clients see it."""

    id: str
    user_id: str
    status: str  # queued | running | completed | failed | cancelled
    template: str | None = None
    preset: str | None = None
    params: dict[str, Any] = {}
    checkpoint: str | None = None
    muse_id: str | None = None
    waiting: Waiting | None = None
    progress: Progress | None = None
    outputs: tuple[Output, ...] = ()
    estimated_cost: float = 0.0
    expected_seconds: float = 0.0
    actual_cost: float | None = None
    seconds: float | None = None
    error: JobError | None = None
    warnings: dict[str, Any] = {}  # ComfyUI node errors of output branches it skipped (the job still completed)
    attempts: int = 0
    instance_id: str | None = None
    prompt_id: str | None = None
    cancel_requested: bool = False
    webhook: WebhookStatus | None = None
    created_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    timeline: tuple[Milestone, ...] = ()


class SubmitResult(msgspec.Struct, kw_only=True):
    """A queued (or, for a repeated idempotency key, the existing) job."""

    job_id: str
    created: bool
    status: str
    estimated_cost: float
    expected_seconds: float
    job: JobView


class EstimateResult(msgspec.Struct, kw_only=True):
    """A cost estimate: expected GPU seconds x $/h of the pool's instances."""

    estimated_cost: float
    expected_seconds: float
    dph: float
    work_units: float
    checkpoint: str | None = None
    preset: str | None = None


class JobPage(msgspec.Struct, kw_only=True):
    """One page of jobs."""

    items: list[JobView]
    next_cursor: str | None = None


class MuseView(msgspec.Struct, kw_only=True):
    """A muse and its owner."""

    id: str
    user_id: str
    muse: MuseSpec
    version: int
    created_at: datetime | None = None
    updated_at: datetime | None = None


class MusePage(msgspec.Struct, kw_only=True):
    """One page of muses."""

    items: list[MuseView]
    next_cursor: str | None = None


class GalleryItem(msgspec.Struct, kw_only=True):
    """One output in a user's gallery."""

    object_name: str
    job_id: str
    filename: str
    content_type: str
    size: int
    sha256: str
    tags: tuple[str, ...] = ()
    created_at: datetime | None = None


class GalleryPage(msgspec.Struct, kw_only=True):
    """One page of the gallery."""

    items: list[GalleryItem]
    next_cursor: str | None = None


class Error(msgspec.Struct, kw_only=True):
    """Why a request was refused: a stable code and a message for people."""

    code: str
    message: str
    details: Any = None


class Reply(msgspec.Struct, kw_only=True, omit_defaults=True):
    """Every reply: ``ok`` with a result, or not ok with an error."""

    ok: bool
    result: Any = None
    error: Error | None = None
