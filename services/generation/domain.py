"""The job aggregate: its state, what commands on it decide, and how events change it.

Pure: no I/O, no clock reads (commands carry the time they were issued). ``evolve`` is the
only way a job's state changes; ``decide`` returns the events a command causes, or raises
``DomainError``. Completion and the charge are decided together, so an append with the
expected version makes a second completion impossible.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any, Literal

import msgspec

from libs.events import NEW, Position, Recorded
from libs.events import generation as ev
from libs.events.base import Event

Status = Literal["new", "queued", "running", "completed", "failed", "cancelled"]
TERMINAL: frozenset[str] = frozenset({"completed", "failed", "cancelled"})


class DomainError(Exception):
    """A command the job refuses; ``code`` is stable for API clients."""

    def __init__(self, message: str, code: str = "CONFLICT", details: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.details = details


class Milestone(msgspec.Struct, frozen=True, kw_only=True):
    """One step of a job's life at the time its event was recorded (queued, claimed, started, attempt_lost,
    cancel_requested, completed, failed, cancelled)."""

    kind: str
    at: datetime
    detail: str = ""


class Attempt(msgspec.Struct, frozen=True, kw_only=True):
    """One try of the job on one instance."""

    number: int
    instance_id: str
    lease_id: str
    base_url: str
    prompt_id: str
    client_id: str
    dph: float = 0.0
    gpu_name: str = ""
    claimed_at: datetime | None = None
    started_at: datetime | None = None


class Job(msgspec.Struct, frozen=True, kw_only=True):
    """What the job aggregate knows, folded from its events."""

    id: str
    status: Status = "new"
    position: Position = NEW
    request: ev.GenerationRequested | None = None
    requested_at: datetime | None = None
    queued_seq: int = 0
    attempts: int = 0
    current: Attempt | None = None
    lost: tuple[str, ...] = ()  # "instance: message" per lost attempt
    cancel_requested: bool = False
    started_at: datetime | None = None
    finished_at: datetime | None = None
    outputs: tuple[ev.Output, ...] = ()
    warnings: dict[str, Any] = {}  # node errors of output branches ComfyUI skipped
    seconds: float = 0.0
    cost: float = 0.0
    charged: float | None = None
    failure: ev.GenerationFailed | None = None
    webhook_attempts: int = 0
    webhook_delivered: bool = False
    webhook_abandoned: bool = False
    webhook_last_error: str = ""
    webhook_next_at: datetime | None = None
    tags: dict[str, tuple[str, ...]] = {}
    deleted: tuple[str, ...] = ()
    timeline: tuple[Milestone, ...] = ()

    @property
    def terminal(self) -> bool:
        """Completed, failed or cancelled."""
        return self.status in TERMINAL

    @property
    def user_id(self) -> str:
        """The owner ("" before the request is known)."""
        return self.request.user_id if self.request else ""

    @property
    def webhook_pending(self) -> bool:
        """A terminal job whose webhook is neither delivered nor given up."""
        return (self.terminal and self.request is not None and bool(self.request.webhook_url)
                and not self.webhook_delivered and not self.webhook_abandoned)


# --- commands ------------------------------------------------------------------------

class Submit(msgspec.Struct, frozen=True, kw_only=True):
    """Record a new request (a retry of an existing one decides nothing)."""

    request: ev.GenerationRequested


class MarkQueued(msgspec.Struct, frozen=True, kw_only=True):
    """Record the sequence of the job's work-queue message."""

    seq: int


class Claim(msgspec.Struct, frozen=True, kw_only=True):
    """A worker got an instance for the next attempt."""

    instance_id: str
    lease_id: str
    base_url: str
    prompt_id: str
    client_id: str
    dph: float = 0.0
    gpu_name: str = ""


class Start(msgspec.Struct, frozen=True, kw_only=True):
    """ComfyUI accepted the current attempt's prompt."""

    prompt_id: str


class Complete(msgspec.Struct, frozen=True, kw_only=True):
    """The current attempt succeeded and its outputs are stored."""

    prompt_id: str
    outputs: tuple[ev.Output, ...]
    at: datetime
    node_errors: dict[str, Any] = {}
    ran_until: datetime | None = None  # when the prompt ended on the host, if a resumed attempt found it ended


class Fail(msgspec.Struct, frozen=True, kw_only=True):
    """The job cannot succeed."""

    reason: str
    message: str
    at: datetime
    node_errors: dict[str, Any] = {}
    node_id: str | None = None
    node_type: str | None = None
    ran_until: datetime | None = None


class LoseInstance(msgspec.Struct, frozen=True, kw_only=True):
    """The current attempt's instance is gone; try another unless attempts are used up."""

    message: str
    max_attempts: int
    at: datetime


class Cancel(msgspec.Struct, frozen=True, kw_only=True):
    """Stop the job: a queued one ends now, a running one is interrupted by its worker."""

    at: datetime
    reason: str = "cancelled by the user"


class RecordWebhook(msgspec.Struct, frozen=True, kw_only=True):
    """One webhook attempt happened."""

    attempt: int
    url: str
    event: str
    delivered: bool
    max_attempts: int
    status: int = 0
    error: str = ""
    next_attempt_at: datetime | None = None


class Tag(msgspec.Struct, frozen=True, kw_only=True):
    """Change the gallery tags of one output."""

    object_name: str
    add: tuple[str, ...] = ()
    remove: tuple[str, ...] = ()


class DeleteOutput(msgspec.Struct, frozen=True, kw_only=True):
    """Remove one output from the gallery."""

    object_name: str


Command = (Submit | MarkQueued | Claim | Start | Complete | Fail | LoseInstance | Cancel | RecordWebhook
           | Tag | DeleteOutput)
MAX_TAGS = 20


def normalize_tag(tag: str) -> str:
    """Lower-case, trimmed; raises DomainError for tags a person could not type back."""
    out = " ".join(tag.strip().lower().split())
    if not 1 <= len(out) <= 40 or any(not (c.isalnum() or c in " _-:.") for c in out):
        raise DomainError(f"invalid tag {tag!r}: 1-40 letters, digits, spaces or _-:.", "VALIDATION_FAILED")
    return out


def _cost(attempt: Attempt | None, at: datetime, ran_until: datetime | None = None) -> tuple[float, float]:
    """Seconds the attempt used its instance, and what that cost at the instance's $/h.

    From the claim to ``at``; or, when a resumed attempt found the prompt already ended on the
    host (its worker had died), only until ``ran_until``: the user does not pay for Stoker's
    downtime. ``ran_until`` comes from the host's clock, so it is kept between claim and ``at``.
    """
    if attempt is None or attempt.claimed_at is None:
        return 0.0, 0.0
    end = at if ran_until is None else min(at, max(ran_until, attempt.claimed_at))
    seconds = max(0.0, (end - attempt.claimed_at).total_seconds())
    return round(seconds, 3), round(attempt.dph * seconds / 3600.0, 6)


def decide(job: Job, command: Command) -> list[Event]:
    """The events ``command`` causes on ``job`` (empty: nothing to do, e.g. a retry)."""
    match command:
        case Submit():
            return [] if job.status != "new" else [command.request]
    if job.status == "new":
        raise DomainError(f"no job {job.id}", "NOT_FOUND")
    match command:
        case MarkQueued():
            return [] if job.terminal or job.queued_seq else [ev.GenerationQueued(seq=command.seq)]
        case Claim():
            if job.terminal or job.current is not None:
                raise DomainError(f"job {job.id} is {job.status}, it cannot take an instance")
            return [ev.GenerationClaimed(instance_id=command.instance_id, lease_id=command.lease_id,
                                         base_url=command.base_url, prompt_id=command.prompt_id,
                                         client_id=command.client_id, attempt=job.attempts + 1,
                                         dph=command.dph, gpu_name=command.gpu_name)]
        case Start():
            cur = job.current
            if job.terminal or cur is None or cur.prompt_id != command.prompt_id or cur.started_at is not None:
                return []
            return [ev.GenerationStarted(instance_id=cur.instance_id, prompt_id=cur.prompt_id,
                                         lease_id=cur.lease_id, attempt=cur.number)]
        case Complete():
            cur = job.current
            if job.terminal:
                return []
            if cur is None or cur.prompt_id != command.prompt_id:
                raise DomainError(f"prompt {command.prompt_id} is not the job's current attempt")
            seconds, cost = _cost(cur, command.at, command.ran_until)
            return [ev.GenerationCompleted(prompt_id=cur.prompt_id, outputs=command.outputs, cost=cost,
                                           seconds=seconds, attempt=cur.number, node_errors=command.node_errors),
                    ev.GenerationCharged(user_id=job.user_id, amount=cost, seconds=seconds, dph=cur.dph,
                                         instance_id=cur.instance_id)]
        case Fail():
            if job.terminal:
                return []
            _, cost = _cost(job.current, command.at, command.ran_until)
            return [ev.GenerationFailed(reason=command.reason, message=command.message,
                                        node_errors=command.node_errors, cost=cost, node_id=command.node_id,
                                        node_type=command.node_type)]
        case LoseInstance():
            cur = job.current
            if job.terminal or cur is None:
                return []
            events: list[Event] = [ev.GenerationAttemptLost(instance_id=cur.instance_id, attempt=cur.number,
                                                               message=command.message)]
            if job.cancel_requested:
                events.append(ev.GenerationFailed(reason="cancelled", message="cancelled while running"))
            elif cur.number >= command.max_attempts:
                events.append(ev.GenerationFailed(
                    reason="instance_lost",
                    message=f"the GPU instance was lost {cur.number} time(s); last: {command.message}. "
                            "Submit the job again, or check the pool's instances."))
            return events
        case Cancel():
            if job.status == "cancelled":
                return []
            if job.terminal:
                raise DomainError(f"job {job.id} already {job.status}", "CONFLICT")
            if job.current is None:
                return [ev.GenerationFailed(reason="cancelled", message=f"{command.reason} while queued")]
            return [] if job.cancel_requested else [ev.GenerationCancelRequested(reason=command.reason)]
        case RecordWebhook():
            if command.attempt != job.webhook_attempts + 1 or job.webhook_delivered or job.webhook_abandoned:
                return []
            out: list[Event] = [ev.WebhookAttempted(
                attempt=command.attempt, url=command.url, event=command.event, delivered=command.delivered,
                status=command.status, error=command.error,
                next_attempt_at=None if command.delivered or command.attempt >= command.max_attempts
                else command.next_attempt_at)]
            if not command.delivered and command.attempt >= command.max_attempts:
                out.append(ev.WebhookAbandoned(attempts=command.attempt, last_error=command.error))
            return out
        case Tag():
            _owned_output(job, command.object_name)
            tags = list(job.tags.get(command.object_name, ()))
            for t in map(normalize_tag, command.add):
                if t not in tags:
                    tags.append(t)
            removing = {normalize_tag(t) for t in command.remove}
            tags = [t for t in tags if t not in removing]
            if len(tags) > MAX_TAGS:
                raise DomainError(f"at most {MAX_TAGS} tags per output", "VALIDATION_FAILED")
            if tuple(tags) == job.tags.get(command.object_name, ()):
                return []
            return [ev.OutputTagged(object_name=command.object_name, tags=tuple(tags))]
        case DeleteOutput():
            _owned_output(job, command.object_name)
            return [ev.OutputDeleted(object_name=command.object_name)]
    raise TypeError(f"unknown command {command!r}")


def _owned_output(job: Job, object_name: str) -> None:
    if object_name in job.deleted or all(o.object_name != object_name for o in job.outputs):
        raise DomainError(f"no output {object_name}", "NOT_FOUND")


def _milestone(event: Any, at: datetime) -> Milestone | None:
    """The timeline entry an event makes, if any."""
    match event:
        case ev.GenerationRequested():
            return Milestone(kind="queued", at=at)
        case ev.GenerationClaimed():
            return Milestone(kind="claimed", at=at, detail=event.gpu_name or event.instance_id)
        case ev.GenerationStarted():
            return Milestone(kind="started", at=at)
        case ev.GenerationAttemptLost():
            return Milestone(kind="attempt_lost", at=at, detail=event.message)
        case ev.GenerationCancelRequested():
            return Milestone(kind="cancel_requested", at=at)
        case ev.GenerationCompleted():
            return Milestone(kind="completed", at=at)
        case ev.GenerationFailed():
            return Milestone(kind="cancelled" if event.reason == "cancelled" else "failed", at=at,
                             detail=event.reason)
    return None


def evolve(job: Job, event: Any, at: datetime) -> Job:
    """Apply one event (recorded at ``at``) to a job; its timeline gets the step the event marks."""
    after = _evolve(job, event, at)
    step = _milestone(event, at)
    if step is None or after is job:
        return after
    return msgspec.structs.replace(after, timeline=(*job.timeline, step))


def _evolve(job: Job, event: Any, at: datetime) -> Job:
    r = msgspec.structs.replace
    match event:
        case ev.GenerationRequested():
            return r(job, status="queued", request=event, requested_at=at)
        case ev.GenerationQueued():
            return r(job, queued_seq=event.seq)
        case ev.GenerationClaimed():
            attempt = Attempt(number=event.attempt, instance_id=event.instance_id, lease_id=event.lease_id,
                              base_url=event.base_url, prompt_id=event.prompt_id, client_id=event.client_id,
                              dph=event.dph, gpu_name=event.gpu_name, claimed_at=at)
            return r(job, status="running", current=attempt, attempts=event.attempt)
        case ev.GenerationStarted():
            cur = job.current
            if cur is None:
                return job
            return r(job, current=r(cur, started_at=at), started_at=job.started_at or at)
        case ev.GenerationAttemptLost():
            lost = (*job.lost, f"{event.instance_id}: {event.message}")
            return r(job, status="queued" if not job.terminal else job.status, current=None, lost=lost)
        case ev.GenerationCancelRequested():
            return r(job, cancel_requested=True)
        case ev.GenerationCompleted():
            return r(job, status="completed", outputs=event.outputs, cost=event.cost, seconds=event.seconds,
                     finished_at=at, warnings=event.node_errors)
        case ev.GenerationCharged():
            return r(job, charged=(job.charged or 0.0) + event.amount)
        case ev.GenerationFailed():
            status: Status = "cancelled" if event.reason == "cancelled" else "failed"
            return r(job, status=status, failure=event, cost=event.cost, finished_at=at)
        case ev.WebhookAttempted():
            return r(job, webhook_attempts=event.attempt, webhook_delivered=event.delivered,
                     webhook_last_error=event.error, webhook_next_at=event.next_attempt_at)
        case ev.WebhookAbandoned():
            return r(job, webhook_abandoned=True, webhook_next_at=None)
        case ev.OutputTagged():
            return r(job, tags={**job.tags, event.object_name: event.tags})
        case ev.OutputDeleted():
            tags = {k: v for k, v in job.tags.items() if k != event.object_name}
            return r(job, deleted=(*job.deleted, event.object_name), tags=tags)
    return job


def fold(job_id: str, records: Iterable[Recorded]) -> Job:
    """A job's state from its recorded history."""
    job = Job(id=job_id)
    for rec in records:
        env = rec.envelope
        job = evolve(job, env.event, env.occurred_at)
        job = msgspec.structs.replace(job, position=Position(env.aggregate_version, rec.seq))
    return job
