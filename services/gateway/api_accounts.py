"""Account administration (admins) and your own password and sessions; the admin key's browser session."""

from __future__ import annotations

from typing import Any

from services.gateway import auth, passwords
from services.gateway import schemas as s
from services.gateway.account_admin import BuiltinAccount, NoSuchSession, WrongPassword
from services.gateway.accounts import NoSuchUser
from services.gateway.errors import ApiError, validation_failed
from services.gateway.resources import ACCOUNT_ADMIN, CONFIG
from services.gateway.routing import Call, Operation, json_response, require_database

BUILTIN = "the built-in admin account is the admin key's own: change STOKER_ADMIN_KEY instead"


def _no_such_account() -> ApiError:
    return ApiError(404, "NOT_FOUND", "no such account")


def _not_yourself(call: Call, user_id: str, what: str) -> None:
    if user_id == call.app[ACCOUNT_ADMIN].builtin_id:
        raise ApiError(409, "CONFLICT", BUILTIN)
    if user_id == call.who.user_id:
        raise ApiError(409, "CONFLICT", f"you cannot {what} your own account (another admin, or the admin key, can)")


async def list_accounts(call: Call) -> Any:
    """Every account, with its state and how many sessions and tokens it has."""
    require_database(call.app)
    return {"items": await call.app[ACCOUNT_ADMIN].list()}


async def _set_disabled(call: Call, disabled: bool) -> Any:
    require_database(call.app)
    user_id = call.path("id")
    if disabled:
        _not_yourself(call, user_id, "disable")
    try:
        return await call.app[ACCOUNT_ADMIN].set_disabled(user_id, disabled, call.meta())
    except NoSuchUser:
        raise _no_such_account() from None
    except BuiltinAccount:
        raise ApiError(409, "CONFLICT", BUILTIN) from None


async def disable_account(call: Call) -> Any:
    """Disable an account: it cannot sign in, its sessions end, its tokens stop working."""
    return await _set_disabled(call, True)


async def enable_account(call: Call) -> Any:
    """Enable an account again."""
    return await _set_disabled(call, False)


async def reset_password(call: Call) -> Any:
    """Set an account's password (tell its owner privately); its sessions end."""
    require_database(call.app)
    body: s.PasswordResetBody = call.body
    if passwords.is_common(body.password):
        raise validation_failed("that password is too common: choose another")
    try:
        return await call.app[ACCOUNT_ADMIN].reset_password(call.path("id"), body.password, call.meta())
    except NoSuchUser:
        raise _no_such_account() from None
    except BuiltinAccount:
        raise ApiError(409, "CONFLICT", BUILTIN) from None


async def delete_account(call: Call) -> Any:
    """Delete an account with its tokens and sessions (its past events stay in the audit log)."""
    require_database(call.app)
    user_id = call.path("id")
    _not_yourself(call, user_id, "delete")
    try:
        return await call.app[ACCOUNT_ADMIN].delete(user_id, call.meta())
    except NoSuchUser:
        raise _no_such_account() from None
    except BuiltinAccount:
        raise ApiError(409, "CONFLICT", BUILTIN) from None


async def change_password(call: Call) -> Any:
    """Change your own password; your other sessions end (this one stays)."""
    require_database(call.app)
    body: s.PasswordChangeBody = call.body
    who = call.who
    if who.via == "admin_key" or who.user_id is None:
        raise ApiError(409, "CONFLICT", BUILTIN)
    keep = who.credential_id if who.via == "session" else None
    if passwords.is_common(body.new_password):
        raise validation_failed("that password is too common: choose another")
    try:
        return await call.app[ACCOUNT_ADMIN].change_password(who.user_id, body.current_password, body.new_password,
                                                             keep, call.meta())
    except WrongPassword:
        raise ApiError(403, "FORBIDDEN", "the current password is wrong") from None
    except BuiltinAccount:
        raise ApiError(409, "CONFLICT", BUILTIN) from None
    except NoSuchUser:
        raise _no_such_account() from None


async def list_sessions(call: Call) -> Any:
    """Live sign-in sessions: your own; an admin may name an account (``user_id``), or ``all``."""
    require_database(call.app)
    who = call.who
    q: s.SessionsQuery = call.query
    user_id = who.user_id
    if q.user_id is not None and q.user_id != who.user_id:
        if not who.is_admin:
            raise ApiError(403, "FORBIDDEN", "you can only see your own sessions")
        user_id = None if q.user_id == "all" else q.user_id
    current = who.credential_id if who.via == "session" else None
    return {"items": await call.app[ACCOUNT_ADMIN].sessions(user_id, current)}


async def revoke_session(call: Call) -> Any:
    """End one of your sessions (admins: anyone's). Someone else's session is simply not found."""
    require_database(call.app)
    who = call.who
    try:
        return await call.app[ACCOUNT_ADMIN].revoke_session(call.path("id"), None if who.is_admin else who.user_id,
                                                            call.meta())
    except NoSuchSession:
        raise ApiError(404, "NOT_FOUND", "no such session") from None


async def admin_session(call: Call) -> Any:
    """Exchange the admin key for a browser session of its built-in admin account (a cookie, like sign-in)."""
    require_database(call.app)
    if call.who.via != "admin_key":
        raise ApiError(403, "FORBIDDEN", "send the admin key as X-Admin-Api-Key to start its session")
    try:
        token, user, expires = await call.app[ACCOUNT_ADMIN].admin_session(auth.peer_ip(call.request), call.meta())
    except NoSuchUser:
        raise ApiError(409, "CONFLICT", "the admin key's account could not be created: its names are taken") from None
    response = json_response(s.LoginResult(token=token, expires_at=expires, user=s.User(**user)))
    response.set_cookie(auth.SESSION_COOKIE, token, max_age=int(call.app[CONFIG].session_ttl_s), path="/",
                        httponly=True, samesite="Strict", secure=call.request.secure)
    return response


async def auth_options(call: Call) -> Any:
    """How accounts are made here: by an admin, or (dev mode with STOKER_OPEN_REGISTRATION=1) by anyone."""
    return {"open_registration": call.app[CONFIG].open_registration}


ERRORS = (404, 409, 503)
OPERATIONS = [
    Operation("GET", "/api/v1/accounts", list_accounts, "list_accounts", "List accounts", "accounts", role="admin",
              response=s.AccountList, errors=(503,)),
    Operation("POST", "/api/v1/accounts/{id}/disable", disable_account, "disable_account",
              "Disable an account (its sessions end, tokens stop working)", "accounts", role="admin",
              response=s.Account, errors=ERRORS),
    Operation("POST", "/api/v1/accounts/{id}/enable", enable_account, "enable_account", "Enable an account",
              "accounts", role="admin", response=s.Account, errors=ERRORS),
    Operation("POST", "/api/v1/accounts/{id}/password", reset_password, "reset_password",
              "Set an account's password (its sessions end)", "accounts", role="admin", body=s.PasswordResetBody,
              response=s.PasswordResult, errors=ERRORS),
    Operation("DELETE", "/api/v1/accounts/{id}", delete_account, "delete_account",
              "Delete an account with its tokens and sessions", "accounts", role="admin", response=s.Account,
              errors=ERRORS),
    Operation("PUT", "/api/v1/auth/password", change_password, "change_password",
              "Change your password (your other sessions end)", "accounts", body=s.PasswordChangeBody,
              response=s.PasswordResult, errors=(403, 409, 503)),
    Operation("GET", "/api/v1/auth/sessions", list_sessions, "list_sessions", "List sign-in sessions", "accounts",
              query=s.SessionsQuery, response=s.SessionList, errors=(503,)),
    Operation("DELETE", "/api/v1/auth/sessions/{id}", revoke_session, "revoke_session", "End a sign-in session",
              "accounts", response=s.SessionRevokeResult, errors=(404, 503)),
    Operation("GET", "/api/v1/auth/options", auth_options, "auth_options", "How accounts are made here", "accounts",
              role=None, response=s.AuthOptions),
    Operation("POST", "/api/v1/auth/admin-session", admin_session, "admin_session",
              "Start a browser session of the admin key's built-in account", "accounts", role="admin",
              response=s.LoginResult, errors=(409, 503),
              description="Only with X-Admin-Api-Key. Sets the session cookie, as sign-in does."),
]
