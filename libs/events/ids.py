"""Time-ordered identifiers (UUIDv7, RFC 9562) and subject-safe id checks."""

from __future__ import annotations

import os
import re
import threading
import time
import uuid

_lock = threading.Lock()
_last_ms = 0
_counter = 0

_SAFE_TOKEN = re.compile(r"[A-Za-z0-9_\-:]{1,128}")


def uuid7() -> uuid.UUID:
    """Return a UUIDv7: 48-bit Unix ms timestamp, then a monotonic counter and random bits."""
    global _last_ms, _counter
    with _lock:
        ms = time.time_ns() // 1_000_000
        if ms <= _last_ms:
            # Same (or earlier: clock stepped back) millisecond: keep ids ordered by bumping a counter.
            ms = _last_ms
            _counter += 1
            if _counter > 0xFFF:
                ms += 1
                _counter = 0
        else:
            _counter = 0
        _last_ms = ms
        counter = _counter
    rand = int.from_bytes(os.urandom(8), "big") & ((1 << 62) - 1)
    value = (ms & ((1 << 48) - 1)) << 80 | 0x7 << 76 | counter << 64 | 0b10 << 62 | rand
    return uuid.UUID(int=value)


def new_id() -> str:
    """A new time-ordered id as a string (an event id, a job id, an instance id...)."""
    return str(uuid7())


def is_subject_token(value: str) -> bool:
    """True when value can be one NATS subject token (no dots, wildcards or spaces)."""
    return _SAFE_TOKEN.fullmatch(value) is not None
