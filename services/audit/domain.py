"""The audit core, pure: a stream message becomes a redacted fact, facts become chained records.

No I/O here: the shell fetches messages, calls ``describe`` and ``build``, and writes the rows
(in ``ROW_COLUMNS`` order) with the stream cursors in one transaction.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timezone
from typing import Any, NamedTuple

from libs.events import codec, subjects
from services.audit.chain import (
    VERSION,
    ZERO_HASH,
    Keyring,
    audit_actor,
    from_us,
    to_us,
)
from services.audit.redact import redact

EVENT = "event"
UNREADABLE = "unreadable"
_ENVELOPE_COLUMNS = ("id", "actor", "occurred_at", "aggregate_type", "aggregate_id")

ROW_COLUMNS = ("seq", "event_id", "stream", "stream_seq", "subject", "kind", "type", "aggregate_type",
               "aggregate_id", "actor", "occurred_at", "recorded_at", "payload", "key_id", "prev_hash",
               "hash", "hmac")
Row = tuple[Any, ...]


class Message(NamedTuple):
    """One raw stream message and where it is."""

    stream: str
    subject: str
    seq: int
    timestamp: datetime
    data: bytes


class Fact(NamedTuple):
    """What one message says, redacted, before it takes its place in the chain."""

    event_id: str
    stream: str
    stream_seq: int
    subject: str
    kind: str
    type: str
    aggregate_type: str
    aggregate_id: str
    actor: str
    occurred_at: datetime
    payload: str
    error: codec.DecodeError | None = None
    data: bytes = b""  # the raw message, kept only for unreadable ones (to quarantine)
    traceparent: str | None = None  # the event's trace context (for the write's span, not recorded)
    tracestate: str | None = None


class Head(NamedTuple):
    """The chain's last record: sequence, hash, HMAC and recorded-at (microseconds)."""

    seq: int
    hash: bytes
    hmac: bytes
    recorded_us: int


GENESIS = Head(0, ZERO_HASH, b"", 0)


TEXT_LIMIT = 512  # indexed columns: PostgreSQL refuses btree entries over ~2.7 kB


def _text(value: str) -> str:
    """A column-safe string: PostgreSQL text holds no NUL, and indexed values must stay small."""
    if "\x00" in value:
        value = value.replace("\x00", "\ufffd")
    return value if len(value) <= TEXT_LIMIT else value[:TEXT_LIMIT - 1] + "\u2026"


def _aware(dt: datetime) -> datetime:
    return dt.replace(tzinfo=timezone.utc) if dt.tzinfo is None else dt.astimezone(timezone.utc)


def describe(msg: Message, secrets: frozenset[str] = frozenset()) -> Fact:
    """Decode a message into a fact; one that does not decode becomes an ``unreadable`` fact."""
    try:
        env = codec.decode(msg.data)
    except codec.DecodeError as exc:
        return unreadable(msg, exc)
    body = codec.to_builtins(env)
    for name in _ENVELOPE_COLUMNS:
        body.pop(name, None)
    payload = codec.encode(redact(body, secrets)).decode()
    event_id = _text(env.id) or f"noid:{msg.stream}:{msg.seq}"
    return Fact(event_id, msg.stream, msg.seq, msg.subject, EVENT, type(env.event).__name__,
                _text(env.aggregate_type), _text(env.aggregate_id), _text(audit_actor(env.actor, secrets)),
                _aware(env.occurred_at), payload, traceparent=env.traceparent, tracestate=env.tracestate)


def unreadable(msg: Message, exc: codec.DecodeError) -> Fact:
    """A message no code can read: recorded by position, error and digest (its bytes stay quarantined)."""
    try:
        agg = subjects.aggregate_of(msg.subject)
        agg_type, agg_id = agg.type, agg.id
    except ValueError:
        agg_type = agg_id = ""
    payload = codec.encode({"error": exc.kind, "message": str(exc)[:500], "size": len(msg.data),
                            "sha256": hashlib.sha256(msg.data).hexdigest()}).decode()
    return Fact(f"unreadable:{msg.stream}:{msg.seq}", msg.stream, msg.seq, msg.subject, UNREADABLE,
                _text(exc.event_type or ""), _text(agg_type), _text(agg_id), "", _aware(msg.timestamp), payload, exc,
                msg.data)


def duplicate(fact: Fact) -> Fact:
    """A fact whose event id is already recorded (a producer reused it): recorded under a distinct id."""
    return fact._replace(event_id=f"duplicate:{fact.stream}:{fact.stream_seq}:{fact.event_id}"[:500],
                         kind="duplicate")


def build(head: Head, facts: Iterable[Fact], keyring: Keyring, now: datetime) -> tuple[list[Row], Head]:
    """Chain facts after ``head``: the rows to insert and the new head.

    recorded-at never goes backwards along the chain (retention prunes a prefix by it).
    """
    recorded_us = max(to_us(now), head.recorded_us)
    recorded_at = from_us(recorded_us)
    kid, sign = keyring.current_id, keyring.sign
    seq, prev, mac = head.seq, head.hash, head.hmac
    rows: list[Row] = []
    append, encode, sha256 = rows.append, codec.encode, hashlib.sha256
    for f in facts:
        seq += 1
        # Exactly chain.canonical(...), inlined: this loop is the writer's hot path.
        data = encode([VERSION, seq, f.event_id, f.stream, f.stream_seq, f.subject, f.kind, f.type, f.aggregate_type,
                       f.aggregate_id, f.actor, to_us(f.occurred_at), recorded_us, kid, prev.hex(), f.payload])
        digest = sha256(data).digest()
        mac = sign(data)
        append((seq, f.event_id, f.stream, f.stream_seq, f.subject, f.kind, f.type, f.aggregate_type,
                f.aggregate_id, f.actor, f.occurred_at, recorded_at, f.payload, kid, prev, digest, mac))
        prev = digest
    return rows, Head(seq, prev, mac, recorded_us)


def advance(cursors: Mapping[str, int], facts: Sequence[Fact]) -> dict[str, int]:
    """Stream cursors after applying facts (each stream's highest applied sequence)."""
    out = dict(cursors)
    for f in facts:
        if f.stream_seq > out.get(f.stream, 0):
            out[f.stream] = f.stream_seq
    return out


def fresh(cursor: int, msgs: Sequence[Message]) -> list[Message]:
    """Messages after ``cursor``, in stream order, once each (redeliveries are dropped)."""
    seen: set[int] = set()
    out = []
    for m in sorted(msgs, key=lambda m: m.seq):
        if m.seq > cursor and m.seq not in seen:
            seen.add(m.seq)
            out.append(m)
    return out


def anchor_due(records_since: int, seconds_since: float, every: int, interval: float) -> bool:
    """Anchor every ``every`` records, or after ``interval`` seconds if anything was recorded."""
    return records_since >= every or (records_since > 0 and seconds_since >= interval)
