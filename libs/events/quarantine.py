"""Poison messages: logged, counted and kept in the QUARANTINE stream, never dropped silently."""

from __future__ import annotations

import logging
from collections import Counter

from nats.js import JetStreamContext

from . import subjects

log = logging.getLogger(__name__)


class Quarantine:
    """Records messages one consumer could not process."""

    def __init__(self, js: JetStreamContext | None, consumer: str) -> None:
        self._js = js
        self.consumer = consumer
        self.counts: Counter[str] = Counter()

    async def put(self, *, stream: str, subject: str, seq: int, data: bytes, kind: str, error: str) -> None:
        """Log the bad message, count it, and keep a copy (deduplicated by its position)."""
        self.counts[kind] += 1
        log.error("%s: cannot process %s seq %d on %s (%s): %s",
                  self.consumer, stream, seq, subject, kind, error)
        if self._js is None:
            return
        headers = {
            "Nats-Msg-Id": f"{self.consumer}:{stream}:{seq}",
            "Stoker-Consumer": self.consumer,
            "Stoker-Stream": stream,
            "Stoker-Subject": subject,
            "Stoker-Seq": str(seq),
            "Stoker-Reason": kind,
            "Stoker-Error": error[:1000].replace("\r", " ").replace("\n", " "),
        }
        await self._js.publish(subjects.quarantine_subject(self.consumer), data, headers=headers)

    @property
    def total(self) -> int:
        """How many messages were quarantined since start."""
        return sum(self.counts.values())
