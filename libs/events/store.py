"""An event store over JetStream: checked appends, aggregate loads.

One subject per aggregate. ``append`` publishes each event with ``Nats-Msg-Id`` = event id
(so a retried publish is stored once) and ``Nats-Expected-Last-Subject-Sequence`` (so a
writer that decided on a stale view loses with ``ConcurrencyError``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from typing import Any

from nats.js import JetStreamContext
from nats.js.errors import APIError, NotFoundError

from libs.observability.tracing import with_trace

from . import codec, subjects
from .base import Event
from .envelope import NEW, Aggregate, Envelope, Metadata, Position, Recorded
from .errors import CONFLICT_CODES, DUPLICATE_IN_BATCH, ConcurrencyError
from .ids import new_id

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    """The wall clock, in UTC."""
    return datetime.now(timezone.utc)


class History(Sequence[Recorded]):
    """An aggregate's recorded events, oldest first, and where they end."""

    def __init__(self, records: list[Recorded]) -> None:
        self._records = records

    def __getitem__(self, index: Any) -> Any:
        return self._records[index]

    def __len__(self) -> int:
        return len(self._records)

    @property
    def position(self) -> Position:
        """Version and last stream sequence: pass it to ``append`` as the expected version."""
        if not self._records:
            return NEW
        return Position(self._records[-1].envelope.aggregate_version, self._records[-1].seq)

    @property
    def events(self) -> list[Any]:
        """Just the domain events."""
        return [r.envelope.event for r in self._records]


class EventStore:
    """Append to and load aggregates kept in JetStream event streams."""

    def __init__(self, js: JetStreamContext, *, clock: Clock = utc_now, timeout: float = 5.0) -> None:
        self._js = js
        self._clock = clock
        self._timeout = timeout

    def envelope(self, aggregate: Aggregate, event: Event, version: int, meta: Metadata,
                 event_id: str | None = None) -> Envelope[Any]:
        """Wrap one event in its envelope (id, version, time, actor, causation...)."""
        return Envelope(
            id=event_id or new_id(), schema=type(event).SCHEMA, aggregate_type=aggregate.type,
            aggregate_id=aggregate.id, aggregate_version=version, occurred_at=self._clock(),
            actor=meta.actor, event=event, causation_id=meta.causation_id,
            correlation_id=meta.correlation_id, traceparent=meta.traceparent, tracestate=meta.tracestate,
        )

    async def append(self, aggregate: Aggregate, events: Sequence[Event], expected_version: Position,
                     meta: Metadata, *, event_ids: Sequence[str] | None = None) -> list[Recorded]:
        """Append events after ``expected_version``, atomically; ConcurrencyError if it is stale.

        Several events go as one JetStream atomic batch: all are stored or none.
        ``event_ids`` makes a retry idempotent: if the first id is already stored right
        after ``expected_version``, the stored records are returned and nothing is written.
        """
        if not events:
            return []
        meta = with_trace(meta)  # events written inside a span carry its trace (unless meta names one)
        subject = subjects.aggregate_subject(aggregate)
        stream = subjects.event_stream(aggregate.context)
        ids = list(event_ids) if event_ids is not None else [new_id() for _ in events]
        if len(ids) != len(events):
            raise ValueError("one event id per event")
        version, last_seq = expected_version
        envs = [self.envelope(aggregate, e, version + i + 1, meta, ids[i]) for i, e in enumerate(events)]
        payloads = [codec.encode(env) for env in envs]
        try:
            ack_seq = await self._publish(subject, stream, envs, payloads, last_seq, meta)
        except APIError as exc:
            if exc.err_code not in CONFLICT_CODES | {DUPLICATE_IN_BATCH}:
                raise
            stored = await self._already_stored(stream, subject, last_seq, envs)
            if stored is None:
                raise ConcurrencyError(subject, last_seq, exc.description or "") from None
            return stored
        first = ack_seq - len(envs) + 1
        return [Recorded(stream, subject, first + i, env) for i, env in enumerate(envs)]

    async def _publish(self, subject: str, stream: str, envs: list[Envelope[Any]], payloads: list[bytes],
                       last_seq: int, meta: Metadata) -> int:
        """Publish one event, or several as an atomic batch; return the last stored sequence."""
        def headers(env: Envelope[Any], first: bool) -> dict[str, str]:
            hdrs = {"Nats-Msg-Id": env.id}
            if first:
                hdrs["Nats-Expected-Last-Subject-Sequence"] = str(last_seq)
            if meta.traceparent:
                hdrs["traceparent"] = meta.traceparent
                if meta.tracestate:
                    hdrs["tracestate"] = meta.tracestate
            return hdrs

        if len(envs) == 1:
            ack = await self._js.publish(subject, payloads[0], timeout=self._timeout, stream=stream,
                                         headers=headers(envs[0], True))
            return ack.seq
        batch_id = envs[0].id
        nc = self._js._nc  # the batch protocol is plain publishes plus one request to commit
        for i, (env, payload) in enumerate(zip(envs, payloads), 1):
            hdrs = headers(env, i == 1) | {"Nats-Batch-Id": batch_id, "Nats-Batch-Sequence": str(i)}
            if i < len(envs):
                await nc.publish(subject, payload, headers=hdrs)
                continue
            hdrs["Nats-Batch-Commit"] = "1"
            reply = await nc.request(subject, payload, timeout=self._timeout, headers=hdrs)
            resp = codec.loads(reply.data)
            if "error" in resp:
                raise APIError.from_error(resp["error"])
            return int(resp["seq"])
        raise AssertionError("unreachable")

    async def _already_stored(self, stream: str, subject: str, last_seq: int,
                              envs: list[Envelope[Any]]) -> list[Recorded] | None:
        """If these exact events follow ``last_seq`` already (a retried append), return them."""
        records: list[Recorded] = []
        seq = last_seq
        for env in envs:
            try:
                msg = await self._js.get_msg(stream, seq + 1, subject=subject, next=True)
            except NotFoundError:
                return None
            assert msg.seq is not None and msg.data is not None
            try:
                stored = codec.decode(msg.data)
            except codec.DecodeError:
                return None
            if stored.id != env.id:
                return None
            seq = msg.seq
            records.append(Recorded(stream, subject, seq, stored))
        return records

    async def load(self, aggregate: Aggregate) -> History:
        """Read an aggregate's whole history (direct gets, one per event)."""
        subject = subjects.aggregate_subject(aggregate)
        stream = subjects.event_stream(aggregate.context)
        try:
            last = await self._js.get_last_msg(stream, subject)
        except NotFoundError:
            return History([])
        records: list[Recorded] = []
        seq = 0
        end = last.seq or 0
        while seq < end:
            msg = await self._js.get_msg(stream, seq + 1, subject=subject, next=True)
            assert msg.seq is not None and msg.data is not None
            seq = msg.seq
            records.append(Recorded(stream, subject, seq, codec.decode(msg.data)))
        return History(records)
