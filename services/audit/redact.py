"""Redaction of secrets in audit payloads, pure: secret-looking keys, known keys, bearer values."""

from __future__ import annotations

import functools
import re
from typing import Any

from services.audit.chain import FINGERPRINT, fingerprint

REDACTED = "[redacted]"

# A key is secret-looking when its last word is one of these (``api_key``, ``HF_TOKEN``,
# ``Authorization``, ``clientSecret``); ``token_env`` (names of env vars) is not.
SECRET_WORDS = frozenset({
    "key", "keys", "apikey", "token", "tokens", "secret", "secrets", "password", "passwords", "passwd",
    "pwd", "passphrase", "authorization", "auth", "credential", "credentials", "cookie", "cookies", "salt",
    "privatekey", "dsn",
})
# Names that end like a secret but are not one.
NOT_SECRET = frozenset({"idempotency_key", "key_id", "public_key", "sort_key", "cache_key", "object_key"})
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_WORDS = re.compile(r"[^a-z0-9]+")
_CREDENTIAL_VALUE = re.compile(r"^(bearer|basic|token)\s+\S", re.IGNORECASE)


@functools.lru_cache(maxsize=4096)
def is_secret_name(name: str) -> bool:
    """Whether a mapping key names a secret."""
    snake = _CAMEL.sub("_", name).lower()
    if snake in NOT_SECRET:
        return False
    words = [w for w in _WORDS.split(snake) if w]
    return bool(words) and words[-1] in SECRET_WORDS


_SUSPECT_FIRST = frozenset("aBbTt")  # first letters of admin:..., Bearer/Basic/Token credentials


def redact(value: Any, secrets: frozenset[str] = frozenset()) -> Any:
    """A copy of JSON-like ``value`` with secrets replaced by ``[redacted]``, recursively.

    Values under secret-looking keys, strings equal to or containing a known secret
    (``secrets``, e.g. the admin key) and credential-looking strings (``Bearer ...``) are
    redacted; ``admin:<key>`` actors become ``admin:<fingerprint>``.
    """
    kind = type(value)
    if kind is dict:
        return _dict(value, secrets)
    if kind is list or kind is tuple:
        return _list(value, secrets)
    if kind is str:
        return _str(value, secrets) if value[:1] in _SUSPECT_FIRST or secrets else value
    return value


def _dict(value: dict[Any, Any], secrets: frozenset[str]) -> dict[Any, Any]:
    out = {}
    for k, v in value.items():
        kind = type(v)
        if v is None or (kind is str and not v):
            out[k] = v
        elif type(k) is str and is_secret_name(k) and value_is_set(v):
            out[k] = REDACTED
        elif kind is str:
            out[k] = _str(v, secrets) if v[:1] in _SUSPECT_FIRST or secrets else v
        elif kind is dict:
            out[k] = _dict(v, secrets)
        elif kind is list or kind is tuple:
            out[k] = _list(v, secrets)
        else:
            out[k] = v
    return out


def _list(value: list[Any] | tuple[Any, ...], secrets: frozenset[str]) -> list[Any]:
    return [redact(v, secrets) if type(v) in _CONTAINERS_OR_STR else v for v in value]


_CONTAINERS_OR_STR = frozenset({dict, list, tuple, str})


def value_is_set(value: Any) -> bool:
    """Absent values (None, empty) say nothing secret and stay visible."""
    return value is not None and value != "" and value != [] and value != {}


def _str(value: str, secrets: frozenset[str]) -> str:
    if value.startswith("admin:") and not FINGERPRINT.match(value[6:]):
        return "admin:" + fingerprint(value[6:])
    if value[:1] in _SUSPECT_FIRST and _CREDENTIAL_VALUE.match(value):
        return REDACTED
    for secret in secrets:
        if secret in value:
            return REDACTED
    return value
