"""Shared pieces of the request and response types: the checked base, field types, errors and probes.

Request bodies and query strings are Structs with ``forbid_unknown_fields=True``: a typo is
a 422, not a silently ignored field. Strings are checked for control characters, because
some end up in NATS subjects and SQL parameters.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_FREE_TEXT = frozenset({"password"})  # may hold any character; never stored or logged

Id = Annotated[str, Meta(pattern=r"^[A-Za-z0-9_\-:]{1,128}$", description="a plain id")]
Text = Annotated[str, Meta(max_length=200)]
EventType = Annotated[str, Meta(pattern=r"^[A-Za-z][A-Za-z0-9_]{0,63}$")]
When = Annotated[datetime, Meta(tz=True, description="RFC 3339 time with a UTC offset")]
Username = Annotated[str, Meta(pattern=r"^[a-z0-9][a-z0-9_.\-]{2,63}$",
                               description="3-64 characters: lowercase letters, digits, _ . -")]
Password = Annotated[str, Meta(min_length=10, max_length=1024)]
Context = Literal["pool", "gen", "acct", "audit"]


class Checked(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Base of every request Struct: unknown fields refused, no control characters in strings."""

    def __post_init__(self) -> None:
        for name in self.__struct_fields__:
            value = getattr(self, name)
            if type(value) is str and name not in _FREE_TEXT and _CONTROL.search(value):
                raise ValueError(f"{name} must not contain control characters")
            if type(value) is datetime:  # one time zone from here on; refuse times UTC cannot hold
                try:
                    setattr(self, name, value.astimezone(UTC))
                except OverflowError:
                    raise ValueError(f"{name} is out of range") from None


# --- errors and probes ------------------------------------------------------------------

class ErrorDetail(msgspec.Struct, kw_only=True):
    """Why a request failed: a stable code, a message for people, and optional details."""

    code: str
    message: str
    details: Any = None


class ErrorBody(msgspec.Struct, kw_only=True):
    """Every error response."""

    error: ErrorDetail


class Status(msgspec.Struct, kw_only=True):
    """A probe's answer."""

    status: str
