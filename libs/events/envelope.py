"""The envelope: transport facts about an event, kept apart from its payload."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Generic, NamedTuple, TypeVar

import msgspec

E = TypeVar("E")


class Aggregate(NamedTuple):
    """Which aggregate an event belongs to: bounded context, aggregate type and id."""

    context: str
    type: str
    id: str


class Position(NamedTuple):
    """Where an aggregate's history ends: its event count and the stream sequence of its last event."""

    version: int
    seq: int


NEW = Position(0, 0)


class Envelope(msgspec.Struct, Generic[E], frozen=True, kw_only=True, omit_defaults=True):
    """One stored event: who, what, when, why (causation/correlation) and its trace context.

    ``schema`` is the schema version of ``event`` at write time. ``actor`` names a system
    component (``pool``), a user (``user:<id>``) or an admin key fingerprint
    (``admin:<fp>``): never a key.
    """

    id: str
    schema: int
    aggregate_type: str
    aggregate_id: str
    aggregate_version: int
    occurred_at: datetime
    actor: str
    event: E
    causation_id: str | None = None
    correlation_id: str | None = None
    traceparent: str | None = None
    tracestate: str | None = None


class Recorded(NamedTuple):
    """An envelope as stored in a stream: its stream, subject and stream sequence."""

    stream: str
    subject: str
    seq: int
    envelope: Envelope[Any]

    @property
    def event(self) -> Any:
        """The domain event carried by the envelope."""
        return self.envelope.event


class Metadata(msgspec.Struct, frozen=True, kw_only=True):
    """Optional envelope fields a writer passes along with events."""

    actor: str
    causation_id: str | None = None
    correlation_id: str | None = None
    traceparent: str | None = None
    tracestate: str | None = None
