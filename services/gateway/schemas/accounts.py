"""Accounts, tokens and provider-key request and response types."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from services.gateway.schemas.base import Checked, Id, Password, Username


class RegisterBody(Checked, kw_only=True, forbid_unknown_fields=True):
    """A new account (admins may create admins)."""

    username: Username
    password: Password
    role: Literal["user", "admin"] = "user"


class LoginBody(Checked, kw_only=True, forbid_unknown_fields=True):
    """Credentials to exchange for a session."""

    username: Annotated[str, Meta(min_length=1, max_length=128)]
    password: Annotated[str, Meta(min_length=1, max_length=1024)]


class User(msgspec.Struct, kw_only=True):
    """An account (never its password hash)."""

    id: str
    username: str
    role: Literal["user", "admin"]
    created_at: datetime


class LoginResult(msgspec.Struct, kw_only=True):
    """A session: send ``token`` as ``Authorization: Bearer``, or rely on the cookie set with it."""

    token: str
    token_type: str = "bearer"
    expires_at: datetime
    user: User


class LogoutResult(msgspec.Struct, kw_only=True):
    """Whether a session was ended."""

    logged_out: bool


class Me(msgspec.Struct, kw_only=True):
    """The caller: ``actor`` is how events name them."""

    actor: str
    role: Literal["user", "admin"]
    via: Literal["admin_key", "token", "session"]
    user_id: str | None = None  # the admin key's is its built-in admin account
    user: User | None = None


class SessionStatus(msgspec.Struct, kw_only=True):
    """Whether the caller is signed in; when so, the fields of ``Me``."""

    authenticated: bool
    actor: str | None = None
    role: Literal["user", "admin"] | None = None
    via: Literal["admin_key", "token", "session"] | None = None
    user_id: str | None = None
    user: User | None = None


class NewTokenBody(Checked, kw_only=True, forbid_unknown_fields=True):
    """An API token; ``username`` (or ``user_id``) only for admins issuing a token to another account."""

    name: Annotated[str, Meta(max_length=100)] = ""
    expires_in_s: Annotated[int, Meta(ge=60, le=10 * 365 * 86400)] | None = None
    user_id: Id | None = None
    username: Annotated[str, Meta(min_length=1, max_length=128)] | None = None


class TokenInfo(msgspec.Struct, kw_only=True):
    """An API token as listed: never its value."""

    id: str
    user_id: str
    name: str
    fingerprint: str
    created_at: datetime
    expires_at: datetime | None = None
    last_used_at: datetime | None = None


class NewToken(TokenInfo, kw_only=True):
    """A created token: ``token`` is shown this once and cannot be retrieved again."""

    token: str


class TokenList(msgspec.Struct, kw_only=True):
    """Live API tokens."""

    items: list[TokenInfo]


class RevokeResult(msgspec.Struct, kw_only=True):
    """The revoked token."""

    id: str
    revoked: bool


# --- provider keys ------------------------------------------------------------------------

Key = Annotated[str, Meta(min_length=8, max_length=512, pattern=r"^[!-~]+$")]


class ProviderKeysBody(Checked, kw_only=True, forbid_unknown_fields=True):
    """Provider API keys and model tokens to use from now on (kept in the pool's memory; never stored in
    events or logs). At least one; the model tokens reach machines rented from now on."""

    vastai_api_key: Key | None = None
    hf_token: Key | None = None
    civitai_token: Key | None = None

    def __repr__(self) -> str:
        given = [name for name in ("vastai_api_key", "hf_token", "civitai_token") if getattr(self, name)]
        return f"ProviderKeysBody({', '.join(f'{n}=<redacted>' for n in given)})"


class ProviderKeysResult(msgspec.Struct, kw_only=True):
    """Which providers now use a new key."""

    updated: list[str]
