"""Incident review, audit and usage request and response types."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from libs.contracts import audit as audit_contract
from services.gateway.schemas.base import Checked, Context, EventType, Id, When
from services.gateway.schemas.generation import Generation
from services.gateway.schemas.pool import PoolSummary


class EventsQuery(Checked, kw_only=True, forbid_unknown_fields=True):
    """Filters over one context's event stream; page with ``after`` = the previous page's ``next``."""

    context: Context = "pool"
    aggregate_type: Id | None = None
    aggregate_id: Id | None = None
    type: EventType | None = None
    correlation_id: Id | None = None
    actor: Annotated[str, Meta(max_length=200)] | None = None
    since: When | None = None
    until: When | None = None
    after: Annotated[int, Meta(ge=0, le=2**62)] | None = None
    limit: Annotated[int, Meta(ge=1, le=500)] = 100


class EventItem(msgspec.Struct, kw_only=True):
    """One stored event with its envelope (unreadable messages are listed, with ``error``)."""

    id: str | None
    type: str
    context: str
    aggregate: str
    aggregate_type: str
    aggregate_version: int | None = None
    occurred_at: datetime | None = None
    actor: str | None = None
    correlation_id: str | None = None
    causation_id: str | None = None
    trace_id: str | None = None
    seq: int
    stream: str
    data: dict[str, Any] = {}
    error: str | None = None


class EventsPage(msgspec.Struct, kw_only=True):
    """A page of events; ``next`` is the stream sequence to pass as ``after`` (null: no more)."""

    items: list[EventItem]
    next: int | None = None


class StateQuery(Checked, kw_only=True, forbid_unknown_fields=True):
    """A point in history: an event id, or an RFC 3339 time."""

    at: Annotated[str, Meta(min_length=1, max_length=64)]


class StateAt(msgspec.Struct, kw_only=True):
    """Views as they were right after ``event`` (or at time ``at``); ``jobs``: generations then queued or
    running, and the most recent others (each as ``GET /api/v1/generations/{id}`` showed it, without
    waiting reason or progress)."""

    at: datetime
    seq: int
    event: EventItem | None = None
    pool: PoolSummary
    jobs: list[Generation] = []


# --- audit --------------------------------------------------------------------------------

class AuditQuery(Checked, kw_only=True, forbid_unknown_fields=True):
    """Filters over audit records; keyset pages by ``after`` (ascending) or ``before`` (descending)."""

    since: When | None = None
    until: When | None = None
    actor: Annotated[str, Meta(max_length=200)] | None = None
    type: EventType | None = None
    aggregate_type: Id | None = None
    aggregate_id: Id | None = None
    after: Annotated[int, Meta(ge=0, le=2**62)] | None = None
    before: Annotated[int, Meta(ge=0, le=2**62)] | None = None
    limit: Annotated[int, Meta(ge=1, le=1000)] = 100
    order: Literal["asc", "desc"] = "asc"


class AuditRecord(audit_contract.Record, kw_only=True):
    """One audit record (payload redacted by the audit service): the audit service's reply shape."""


class AuditPage(msgspec.Struct, kw_only=True):
    """A page of audit records; pass ``next`` back as ``after`` (or ``before`` when descending)."""

    items: list[AuditRecord]
    next: int | None = None


class VerifyBody(Checked, kw_only=True, forbid_unknown_fields=True):
    """``deep``: also cross-check every event id against the streams (slower)."""

    deep: bool = False


class AuditProblem(msgspec.Struct, kw_only=True):
    """What is wrong, at which audit sequence, and why."""

    kind: str
    seq: int
    reason: str


class VerifyReport(msgspec.Struct, kw_only=True):
    """The verification's outcome: ``first`` is the earliest bad record (null when ``ok``)."""

    ok: bool
    first: AuditProblem | None
    problems: list[AuditProblem]
    records: int
    first_seq: int
    last_seq: int
    checkpoints: int
    lag: dict[str, int]


# --- usage ---------------------------------------------------------------------------------

class UsageQuery(Checked, kw_only=True, forbid_unknown_fields=True):
    """An inclusive range of UTC days (default: the last 30 days)."""

    since: date | None = None
    until: date | None = None


class UsageBucket(msgspec.Struct, kw_only=True):
    """Instance hours, GPU hours (instance hours x GPUs) and dollars."""

    instance_hours: float
    gpu_hours: float
    cost: float


class UsageDay(msgspec.Struct, kw_only=True):
    """One UTC day, in total and per instance state (loading, idle, busy, failed, terminating)."""

    date: date
    instance_hours: float
    gpu_hours: float
    cost: float
    by_state: dict[str, UsageBucket]


class UsageReport(msgspec.Struct, kw_only=True):
    """GPU hours and cost per day and per state; ``by_user``: charged generations per account (null: none)."""

    since: date
    until: date
    days: list[UsageDay]
    total: UsageBucket
    by_state: dict[str, UsageBucket]
    spend_rate_dph: float
    by_user: dict[str, UsageBucket] | None = None
