"""The chain's cryptography, pure: canonical bytes, record hash, HMAC, key ids, checkpoint signatures.

A record's canonical bytes are a JSON array of every stored field but its own hash and HMAC
(times as integer microseconds since the Unix epoch, the previous hash as hex, the payload as
the exact stored text). ``hash = SHA-256(canonical)`` links the chain; ``hmac =
HMAC-SHA256(key, canonical)`` proves the writer held the key named by ``key_id``.
"""

from __future__ import annotations

import hashlib
import hmac as _hmac
import re
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timedelta, timezone

from libs.contracts.audit import KEY_ID_LABEL, fingerprint, key_id  # noqa: F401  (shared with the gateway)
from libs.events import codec

VERSION = 1
ZERO_HASH = bytes(32)
FINGERPRINT = re.compile(r"^[0-9a-f]{16}$")
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_US = timedelta(microseconds=1)
_sha256 = hashlib.sha256
_BLOCK = 64  # SHA-256 block size
_IPAD = bytes(x ^ 0x36 for x in range(256))
_OPAD = bytes(x ^ 0x5C for x in range(256))


def hmac_sha256(key: bytes) -> Callable[[bytes], bytes]:
    """HMAC-SHA256 with ``key`` (RFC 2104), its pads hashed once: about twice as fast per record."""
    if len(key) > _BLOCK:
        key = _sha256(key).digest()
    key = key.ljust(_BLOCK, b"\0")
    inner0, outer0 = _sha256(key.translate(_IPAD)), _sha256(key.translate(_OPAD))

    def mac(data: bytes) -> bytes:
        inner = inner0.copy()
        inner.update(data)
        outer = outer0.copy()
        outer.update(inner.digest())
        return outer.digest()

    return mac




class UnknownKey(KeyError):
    """A record or checkpoint names a key id the keyring does not hold."""


class Keyring:
    """The signing key and older keys kept for verification, by key id. Never shows a key."""

    def __init__(self, current: bytes, old: Iterable[bytes] = ()) -> None:
        if not current:
            raise ValueError("the audit HMAC key is empty")
        self.current = current
        self.current_id = key_id(current)
        keys = {key_id(k): k for k in old if k}
        keys[self.current_id] = current
        self._old = [k for kid, k in keys.items() if kid != self.current_id]
        self._macs = {kid: hmac_sha256(k) for kid, k in keys.items()}
        self.sign = self._macs[self.current_id]

    @classmethod
    def from_strings(cls, current: str, old: Iterable[str] = ()) -> Keyring:
        """Keys as configured (UTF-8 strings)."""
        return cls(current.encode(), [k.encode() for k in old])

    @property
    def ids(self) -> list[str]:
        """Every key id this keyring can verify."""
        return sorted(self._macs)

    def material(self) -> tuple[bytes, list[bytes]]:
        """The raw keys, to rebuild this keyring in a verification worker process (never log them)."""
        return self.current, list(self._old)

    def get(self, kid: str) -> Callable[[bytes], bytes] | None:
        """The HMAC function of the key with this id, or None."""
        return self._macs.get(kid)

    def check(self, kid: str, data: bytes, mac: bytes) -> bool:
        """Whether ``mac`` is the HMAC of data under key ``kid``; UnknownKey if it is not held."""
        fn = self._macs.get(kid)
        if fn is None:
            raise UnknownKey(kid)
        return _hmac.compare_digest(fn(data), mac)

    def __repr__(self) -> str:
        return f"Keyring(current={self.current_id!r}, ids={self.ids!r})"


def to_us(dt: datetime) -> int:
    """Microseconds since the Unix epoch (a naive datetime counts as UTC)."""
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return (dt - EPOCH) // _US


def from_us(us: int) -> datetime:
    """The UTC datetime of microseconds since the Unix epoch."""
    return EPOCH + timedelta(microseconds=us)


def canonical(seq: int, event_id: str, stream: str, stream_seq: int, subject: str, kind: str, type_: str,
              aggregate_type: str, aggregate_id: str, actor: str, occurred_us: int, recorded_us: int,
              key_id_: str, prev_hash: bytes, payload: str) -> bytes:
    """The exact bytes a record's hash and HMAC are computed over."""
    return codec.encode([VERSION, seq, event_id, stream, stream_seq, subject, kind, type_, aggregate_type,
                         aggregate_id, actor, occurred_us, recorded_us, key_id_, prev_hash.hex(), payload])


def record_hash(data: bytes) -> bytes:
    """SHA-256 of canonical bytes."""
    return _sha256(data).digest()


def checkpoint_bytes(kind: str, chain: str, seq: int, hash_hex: str, hmac_hex: str, kid: str,
                     cursors: Mapping[str, int], extra: str = "") -> bytes:
    """Canonical bytes of a checkpoint (anchor, prune or origin) that its signature covers."""
    return codec.encode(["stoker-audit-checkpoint", VERSION, kind, chain, seq, hash_hex, hmac_hex, kid,
                         sorted(cursors.items()), extra])


def sign_checkpoint(keyring: Keyring, kind: str, chain: str, seq: int, hash_hex: str, hmac_hex: str,
                    cursors: Mapping[str, int], extra: str = "") -> str:
    """Hex HMAC of a checkpoint with the current key (whose id is part of the signed bytes)."""
    data = checkpoint_bytes(kind, chain, seq, hash_hex, hmac_hex, keyring.current_id, cursors, extra)
    return keyring.sign(data).hex()


def checkpoint_valid(keyring: Keyring, kind: str, chain: str, seq: int, hash_hex: str, hmac_hex: str,
                     kid: str, cursors: Mapping[str, int], extra: str, signature: str) -> bool:
    """Whether a checkpoint's signature is good; UnknownKey if its key is not held."""
    data = checkpoint_bytes(kind, chain, seq, hash_hex, hmac_hex, kid, cursors, extra)
    try:
        mac = bytes.fromhex(signature)
    except ValueError:
        return False
    return keyring.check(kid, data, mac)


def audit_actor(actor: str, secrets: frozenset[str] = frozenset()) -> str:
    """The actor as stored: an admin key (raw, or after ``admin:``) becomes ``admin:<fingerprint>``."""
    if actor in secrets:
        return "admin:" + fingerprint(actor)
    if actor.startswith("admin:"):
        rest = actor[6:]
        return actor if FINGERPRINT.match(rest) else "admin:" + fingerprint(rest)
    for secret in secrets:
        if secret in actor:
            return "admin:" + fingerprint(secret)
    return actor
