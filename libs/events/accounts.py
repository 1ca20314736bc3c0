"""Accounts context events: users, API tokens, sign-ins and admin actions (for the audit log).

Aggregates: ``ev.acct.user.<user id>``, ``ev.acct.admin.<key fingerprint>`` and ``ev.acct.admin.rejected``
(wrong admin keys).
Never a password, a password hash, a token or a key in an event: tokens appear by id and
fingerprint only.
"""

from __future__ import annotations

from typing import Any, Literal

from .base import Event

USER = "user"
ADMIN = "admin"

Role = Literal["user", "admin"]


class UserRegistered(Event, frozen=True, kw_only=True):
    """An account was created."""

    username: str
    role: Role = "user"


class PasswordChanged(Event, frozen=True, kw_only=True):
    """The account's password was set (the hash lives in the gateway's credential store, not here)."""

    credential_ref: str


class UserDisabled(Event, frozen=True, kw_only=True):
    """An admin disabled the account: it cannot sign in, and its tokens and sessions stop working."""

    username: str


class UserEnabled(Event, frozen=True, kw_only=True):
    """An admin enabled the account again."""

    username: str


class UserDeleted(Event, frozen=True, kw_only=True):
    """An admin deleted the account (with its tokens and sessions); its past events stay."""

    username: str


class SessionRevoked(Event, frozen=True, kw_only=True):
    """A sign-in session was ended before it expired (by its user or an admin), or with a password change."""

    session_id: str
    reason: str = "revoked"


class LoginSucceeded(Event, frozen=True, kw_only=True):
    """A sign-in worked."""

    ip: str = ""


class LoginFailed(Event, frozen=True, kw_only=True):
    """A sign-in was refused."""

    username: str
    ip: str = ""
    reason: str = "bad_credentials"


class TokenCreated(Event, frozen=True, kw_only=True):
    """An API token was issued (identified by id and fingerprint, never by its value)."""

    token_id: str
    name: str = ""
    fingerprint: str


class TokenRevoked(Event, frozen=True, kw_only=True):
    """An API token was revoked."""

    token_id: str


class AdminActionPerformed(Event, frozen=True, kw_only=True):
    """The admin key was used for an action (method, path, outcome), so it reaches the audit log."""

    action: str
    target: str = ""
    outcome: str = "ok"
    details: dict[str, Any] = {}


class AdminKeyRejected(Event, frozen=True, kw_only=True):
    """A request presented a wrong admin key (never the key itself: where from, and what it asked for)."""

    ip: str = ""
    method: str = ""
    path: str = ""


AccountsEvent = (
    UserRegistered | PasswordChanged | LoginSucceeded | LoginFailed | TokenCreated | TokenRevoked
    | AdminActionPerformed | UserDisabled | UserEnabled | UserDeleted | SessionRevoked | AdminKeyRejected
)
