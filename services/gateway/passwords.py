"""Credentials, pure: scrypt password hashes, random bearer tokens and their stored digests."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

# RFC 7914 interactive parameters: 16 MiB and ~50 ms per hash on a laptop core.
SCRYPT_N = 2**14
SCRYPT_R = 8
SCRYPT_P = 1
SCRYPT_LEN = 32
MAX_PASSWORD_BYTES = 1024

API_TOKEN_PREFIX = "stk"
SESSION_PREFIX = "sss"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int, length: int) -> bytes:
    return hashlib.scrypt(password.encode()[:MAX_PASSWORD_BYTES], salt=salt, n=n, r=r, p=p, dklen=length,
                          maxmem=256 * r * n + 1024 * 1024)


def hash_password(password: str, *, n: int = SCRYPT_N, r: int = SCRYPT_R, p: int = SCRYPT_P) -> str:
    """A self-describing scrypt hash: ``scrypt$n$r$p$salt$digest`` (CPU-bound: run it off the loop)."""
    salt = secrets.token_bytes(16)
    digest = _scrypt(password, salt, n, r, p, SCRYPT_LEN)
    return f"scrypt${n}${r}${p}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, stored: str) -> bool:
    """Whether ``password`` matches a stored hash (constant-time compare; False for malformed hashes)."""
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = _unb64(digest)
        actual = _scrypt(password, _unb64(salt), int(n), int(r), int(p), len(expected))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(actual, expected)


# A hash of a random password: checked for unknown usernames so a miss costs as much as a hit.
DUMMY_HASH = hash_password(secrets.token_urlsafe(16), n=SCRYPT_N)


def new_token(prefix: str) -> str:
    """A fresh bearer token (256 random bits), shown to its owner once."""
    return f"{prefix}_{secrets.token_urlsafe(32)}"


def token_digest(token: str) -> bytes:
    """What is stored for a token: its SHA-256 (tokens are random, so no KDF is needed)."""
    return hashlib.sha256(token.encode()).digest()


def token_fingerprint(token: str) -> str:
    """A short public id of a token's value, safe for events and listings."""
    return hashlib.sha256(b"stoker-token-fp:" + token.encode()).hexdigest()[:16]


def is_token_shaped(value: str) -> bool:
    """Cheap check before a database lookup: one of our prefixes and a plausible length."""
    prefix, _, rest = value.partition("_")
    return prefix in (API_TOKEN_PREFIX, SESSION_PREFIX) and 20 <= len(rest) <= 100
