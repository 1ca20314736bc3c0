"""Errors of the event store."""

from __future__ import annotations

# JetStream API error codes that mean "someone else wrote first".
WRONG_LAST_SEQUENCE = 10071  # Nats-Expected-Last-Subject-Sequence mismatch
WRONG_LAST_MSG_ID = 10070
STREAM_WRONG_LAST_SEQUENCE_CONSTANT = 10164  # expected last sequence mismatch (newer servers)
DUPLICATE_IN_BATCH = 10201  # atomic batch repeats a stored message id
CONFLICT_CODES = frozenset({WRONG_LAST_SEQUENCE, STREAM_WRONG_LAST_SEQUENCE_CONSTANT})


class ConcurrencyError(Exception):
    """The aggregate changed since the caller read it: reload, decide again, retry."""

    def __init__(self, subject: str, expected_seq: int, detail: str = "") -> None:
        super().__init__(f"{subject}: expected last sequence {expected_seq} is stale {detail}".strip())
        self.subject = subject
        self.expected_seq = expected_seq
