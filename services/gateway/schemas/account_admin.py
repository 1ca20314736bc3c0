"""Account administration and session request and response types."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from services.gateway.schemas.base import Checked, Id, Password


class Account(msgspec.Struct, kw_only=True):
    """An account as an admin sees it. ``builtin``: the admin key's own account."""

    id: str
    username: str
    role: Literal["user", "admin"]
    created_at: datetime
    disabled: bool = False
    builtin: bool = False
    sessions: int = 0
    tokens: int = 0


class AccountList(msgspec.Struct, kw_only=True):
    """Every account, by username."""

    items: list[Account]


class PasswordResetBody(Checked, kw_only=True, forbid_unknown_fields=True):
    """A new password set by an admin (the account's sessions end)."""

    password: Password


class PasswordChangeBody(Checked, kw_only=True, forbid_unknown_fields=True):
    """Your current password and the new one (your other sessions end)."""

    current_password: Annotated[str, Meta(min_length=1, max_length=1024)]
    new_password: Password


class PasswordResult(Account, kw_only=True):
    """The account after a password change, and how many sessions ended with it."""

    sessions_ended: int = 0


class SessionsQuery(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Whose sessions: your own; an admin may name an account, or ``all``."""

    user_id: Id | None = None


class SessionInfo(msgspec.Struct, kw_only=True):
    """A live sign-in session (never its value). ``current``: the one this request used."""

    id: str
    user_id: str
    username: str
    created_at: datetime
    expires_at: datetime | None = None
    last_used_at: datetime | None = None
    current: bool = False


class SessionList(msgspec.Struct, kw_only=True):
    """Live sign-in sessions, newest first."""

    items: list[SessionInfo]


class SessionRevokeResult(msgspec.Struct, kw_only=True):
    """The ended session."""

    id: str
    revoked: bool


class AuthOptions(msgspec.Struct, kw_only=True):
    """Whether anyone may create a (user) account here; otherwise an admin makes accounts."""

    open_registration: bool
