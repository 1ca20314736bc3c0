"""The only place events meet bytes: one encoder, one decoder per union, built once."""

from __future__ import annotations

import typing
from typing import Any

import msgspec

from .accounts import AccountsEvent
from .audit import AuditEvent
from .envelope import Envelope
from .generation import GenerationEvent
from .pool import PoolEvent

AnyEvent = PoolEvent | GenerationEvent | AuditEvent | AccountsEvent

EVENT_TYPES: dict[str, type[Any]] = {cls.__name__: cls for cls in typing.get_args(AnyEvent)}


class DecodeError(Exception):
    """A stored message that cannot become an event; ``kind`` says why."""

    kind = "malformed"

    def __init__(self, message: str, *, event_type: str | None = None) -> None:
        super().__init__(message)
        self.event_type = event_type


class MalformedMessage(DecodeError):
    """Not an envelope at all (garbage bytes, wrong shape)."""

    kind = "malformed"


class UnknownEventType(DecodeError):
    """A well-formed envelope whose event type this code does not know."""

    kind = "unknown_type"


class NewerSchema(DecodeError):
    """An event written by a newer schema version than this code understands."""

    kind = "newer_schema"


class _PeekEvent(msgspec.Struct):
    type: str = ""


class _Peek(msgspec.Struct):
    schema: int = 0
    event: _PeekEvent = msgspec.field(default_factory=_PeekEvent)


_encoder = msgspec.json.Encoder()
_envelope_decoder = msgspec.json.Decoder(Envelope[AnyEvent])
_peek_decoder = msgspec.json.Decoder(_Peek)


def encode(value: Any) -> bytes:
    """Encode an envelope (or any msgspec-supported value) as JSON bytes."""
    return _encoder.encode(value)


def decode(data: bytes) -> Envelope[Any]:
    """Decode stored bytes into an envelope with a typed event, or raise a DecodeError."""
    try:
        envelope = _envelope_decoder.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise _classify(data, exc) from None
    if envelope.schema > type(envelope.event).SCHEMA:
        name = type(envelope.event).__name__
        raise NewerSchema(
            f"{name} schema {envelope.schema} is newer than supported {type(envelope.event).SCHEMA}",
            event_type=name,
        )
    return envelope


def _classify(data: bytes, exc: Exception) -> DecodeError:
    """Tell an unknown type or newer schema from plain garbage, for a useful error."""
    try:
        peek = _peek_decoder.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return MalformedMessage(f"not an event envelope: {exc}")
    name = peek.event.type
    known = EVENT_TYPES.get(name)
    if known is None:
        return UnknownEventType(f"unknown event type {name!r}", event_type=name or None)
    if peek.schema > known.SCHEMA:
        return NewerSchema(f"{name} schema {peek.schema} is newer than supported {known.SCHEMA}",
                           event_type=name)
    return MalformedMessage(f"invalid {name}: {exc}", event_type=name)


def decoder_for(type_: Any) -> msgspec.json.Decoder[Any]:
    """Build (once, at import of the caller) a decoder for a command or request type."""
    return msgspec.json.Decoder(type_)


def loads(data: bytes) -> Any:
    """Parse JSON bytes into plain builtins (API replies that have no Struct)."""
    return msgspec.json.decode(data)


def to_builtins(value: Any) -> Any:
    """Turn a Struct into plain JSON-ready builtins (for APIs and audit payloads)."""
    return msgspec.to_builtins(value)
