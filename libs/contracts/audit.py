"""What other services may ask the audit service: pages of records and verification, over NATS request/reply.

The audit service alone holds the chain's HMAC key and the audit database. It answers, per chain
(``subjects.scoped(subjects.AUDIT_QUERY, chain)``, default chain ``main``):

``cmd.audit.<chain>.query``  ``QueryRequest`` -> ``Reply(result=Page)``; any audit process may answer
    (queue group ``subjects.AUDIT_READERS``), so extra read-only replicas can share the load.
``cmd.audit.<chain>.verify`` ``VerifyRequest`` -> ``Reply(result=VerifyReport)``; answered only by the
    process holding the key, one verification at a time: a request while one runs is refused with
    ``BUSY`` (retry later), never queued behind it.

Errors: ``VALIDATION_FAILED`` (a malformed request), ``BUSY``, ``UNAVAILABLE`` (no audit log yet, or
the database is down), ``INTERNAL``. The ``Error``/``Reply`` shape is the pool's and generation's.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime
from typing import Any, Literal

import msgspec

from libs.events import subjects

DEFAULT_CHAIN = "main"
VERIFY_TIMEOUT = 300.0  # seconds a caller waits for a verification (a long chain takes a while)
MAX_LIMIT = 1000
KEY_ID_LABEL = b"stoker-key-id"


def key_id(key: bytes) -> str:
    """A key's public id: the first 8 bytes (hex) of HMAC-SHA256(key, "stoker-key-id")."""
    return hmac.new(key, KEY_ID_LABEL, hashlib.sha256).hexdigest()[:16]


def fingerprint(secret: str) -> str:
    """An HMAC fingerprint of a secret (an admin key), safe to store and show: the actor the audit log shows."""
    return key_id(secret.encode())


def query_subject(chain: str) -> str:
    """The query subject of one chain."""
    return subjects.scoped(subjects.AUDIT_QUERY, chain)


def verify_subject(chain: str) -> str:
    """The verify subject of one chain."""
    return subjects.scoped(subjects.AUDIT_VERIFY, chain)


class Error(msgspec.Struct, kw_only=True):
    """Why a request was refused: a stable code and a message for people."""

    code: str
    message: str
    details: Any = None


class Reply(msgspec.Struct, kw_only=True, omit_defaults=True):
    """Every reply: ``ok`` with a result, or not ok with an error."""

    ok: bool
    result: Any = None
    error: Error | None = None


class QueryRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Filters over records; keyset pages by ``after`` (ascending) or ``before`` (descending)."""

    since: datetime | None = None
    until: datetime | None = None
    actor: str | None = None
    type: str | None = None
    aggregate_type: str | None = None
    aggregate_id: str | None = None
    after: int | None = None
    before: int | None = None
    limit: int = msgspec.field(default=100)
    order: Literal["asc", "desc"] = "asc"


class Record(msgspec.Struct, kw_only=True):
    """One audit record (payload as redacted by the audit service, hash as hex)."""

    seq: int
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
    recorded_at: datetime
    payload: Any
    key_id: str
    hash: str


class Page(msgspec.Struct, kw_only=True):
    """A page of records; ``next`` is the cursor of the following page (null: no more)."""

    items: list[Record]
    next: int | None = None


class VerifyRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """``deep``: also cross-check every event id against the streams (slower)."""

    deep: bool = False


class Problem(msgspec.Struct, kw_only=True):
    """What is wrong, at which audit sequence, and why."""

    kind: str
    seq: int
    reason: str


class VerifyReport(msgspec.Struct, kw_only=True):
    """The verification's outcome: ``first`` is the earliest bad record (null when ``ok``)."""

    ok: bool
    first: Problem | None
    problems: list[Problem]
    records: int
    first_seq: int
    last_seq: int
    checkpoints: int
    lag: dict[str, int]
