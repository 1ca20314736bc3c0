"""Audit context events: signed checkpoints of the audit chain, kept outside the database.

Aggregate: ``ev.audit.chain.<chain id>``. Each event carries an HMAC-SHA256 ``signature``
(hex) over its canonical bytes (``services.audit.chain.checkpoint_bytes``) made with the key
named by ``key_id``, so a reader holding the keyring can tell a real checkpoint from a forged one.
"""

from __future__ import annotations

from .base import Event

CHAIN = "chain"


class AuditAnchored(Event, frozen=True, kw_only=True):
    """The chain head at ``seq``: its record hash and HMAC, and each stream's applied sequence."""

    chain: str
    seq: int
    hash: str  # hex SHA-256 of the record at ``seq``
    hmac: str  # hex HMAC-SHA256 of the record at ``seq``
    key_id: str  # the key that made ``signature``
    cursors: dict[str, int] = {}
    signature: str


class AuditPruned(Event, frozen=True, kw_only=True):
    """Records up to ``through_seq`` were deleted by retention; the rest chains from ``hash``."""

    chain: str
    through_seq: int
    hash: str  # hex SHA-256 of the last pruned record (the next record's previous hash)
    hmac: str
    key_id: str
    cursors: dict[str, int] = {}  # per stream: the last stream sequence whose record was pruned
    cutoff: str = ""  # RFC 3339: records recorded before it were eligible
    count: int = 0
    signature: str


AuditEvent = AuditAnchored | AuditPruned
