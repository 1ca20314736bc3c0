"""Credentials, pure: scrypt password hashes, random bearer tokens and their stored digests."""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import re
import secrets
from pathlib import Path

# OWASP's password storage guidance for scrypt: N=2^17, r=8, p=1 (128 MiB per hash; hashes made
# with a lower cost are upgraded at the next sign-in).
SCRYPT_N = 2**17
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


def needs_rehash(stored: str, *, n: int = SCRYPT_N, r: int = SCRYPT_R, p: int = SCRYPT_P) -> bool:
    """Whether a stored hash was made with a lower cost than today's (so it is replaced at sign-in)."""
    try:
        scheme, sn, sr, sp, _, _ = stored.split("$")
        return scheme != "scrypt" or int(sn) < n or int(sr) < r or int(sp) < p
    except ValueError:
        return True


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


@functools.lru_cache(maxsize=4)
def dummy_hash(n: int = SCRYPT_N) -> str:
    """A hash of a random password: checked for unknown usernames so a miss costs as much as a hit."""
    return hash_password(secrets.token_urlsafe(16), n=n)


COMMON_PASSWORDS_FILE = Path(__file__).with_name("common_passwords.txt")


@functools.lru_cache(maxsize=1)
def _common() -> frozenset[str]:
    lines = COMMON_PASSWORDS_FILE.read_text().splitlines()
    return frozenset(line.strip().lower() for line in lines if line.strip() and not line.startswith("#"))


def is_common(password: str, username: str = "") -> bool:
    """Whether a password is on the shipped list of the most common ones (or is the username itself)."""
    lowered = password.strip().lower()
    return lowered in _common() or (bool(username) and lowered == username.strip().lower())


def new_token(prefix: str) -> str:
    """A fresh bearer token (256 random bits), shown to its owner once."""
    return f"{prefix}_{secrets.token_urlsafe(32)}"


def token_digest(token: str) -> bytes:
    """What is stored for a token: its SHA-256 (tokens are random, so no KDF is needed)."""
    return hashlib.sha256(token.encode()).digest()


def token_fingerprint(token: str) -> str:
    """A short public id of a token's value, safe for events and listings."""
    return hashlib.sha256(b"stoker-token-fp:" + token.encode()).hexdigest()[:16]


TOKEN_BODY = re.compile(r"^[A-Za-z0-9_\-]{20,100}$")  # what secrets.token_urlsafe makes


def is_token_shaped(value: str) -> bool:
    """Cheap check before a database lookup: one of our prefixes, a plausible length, URL-safe characters only
    (so a stray byte in a header is refused here, never encoded)."""
    prefix, _, rest = value.partition("_")
    return prefix in (API_TOKEN_PREFIX, SESSION_PREFIX) and TOKEN_BODY.match(rest) is not None
