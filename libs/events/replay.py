"""Replay for incident review: the events of a filter between two points in time."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from contextlib import aclosing
from datetime import datetime

from nats.js import JetStreamContext

from . import codec
from .envelope import Recorded
from .reader import read_until_caught_up


class Unreadable(Exception):
    """A stored message in the replayed range that does not decode (reported, not hidden)."""

    def __init__(self, subject: str, seq: int, error: codec.DecodeError) -> None:
        super().__init__(f"seq {seq} on {subject}: {error}")
        self.subject, self.seq, self.error = subject, seq, error


async def replay(js: JetStreamContext, stream: str, filter_subject: str, *,
                 since: datetime | int | None = None, until: datetime | int | None = None,
                 ) -> AsyncGenerator[Recorded | Unreadable, None]:
    """Yield the stream's events matching ``filter_subject`` from ``since`` to ``until``.

    Bounds are inclusive stream sequences (int) or times (datetime, by the time the server
    stored the message). Undecodable messages are yielded as ``Unreadable``, never skipped.
    """
    start_seq = since if isinstance(since, int) else 0
    start_time = since if isinstance(since, datetime) else None
    reader = read_until_caught_up(js, stream, filter_subject, start_seq=start_seq, start_time=start_time)
    async with aclosing(reader):
        async for d in reader:
            if isinstance(until, int) and d.seq > until:
                return
            if isinstance(until, datetime) and d.timestamp > until:
                return
            try:
                yield Recorded(stream, d.subject, d.seq, codec.decode(d.data))
            except codec.DecodeError as exc:
                yield Unreadable(d.subject, d.seq, exc)
