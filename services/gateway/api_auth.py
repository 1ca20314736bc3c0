"""Accounts endpoints: register, sign in and out, who am I, and API tokens (a user sees only their own)."""

from __future__ import annotations

from typing import Any

from services.gateway import auth, passwords
from services.gateway import schemas as s
from services.gateway.accounts import BadCredentials, NoSuchToken, NoSuchUser, TooManyTokens
from services.gateway.errors import ApiError, validation_failed
from services.gateway.repository import UsernameTaken
from services.gateway.resources import ACCOUNT_ADMIN, ACCOUNTS, CONFIG, DATABASE
from services.gateway.routing import Call, Operation, json_response, require_database


async def register(call: Call) -> Any:
    """Create an account: admins only, unless open registration is on (dev mode, role user only)."""
    body: s.RegisterBody = call.body
    who = call.principal
    if who is None or not who.is_admin:
        if not call.app[CONFIG].open_registration:
            if who is None:
                raise ApiError(401, "AUTH_REQUIRED", "only an admin can create accounts")
            raise ApiError(403, "FORBIDDEN", "only an admin can create accounts")
        if body.role != "user":
            raise ApiError(403, "FORBIDDEN", "only an admin can create admin accounts")
    if passwords.is_common(body.password, body.username):
        raise validation_failed("that password is too common (or is the username): choose another")
    require_database(call.app)
    try:
        return await call.app[ACCOUNTS].register(body.username, body.password, body.role, call.meta())
    except UsernameTaken:
        raise ApiError(409, "CONFLICT", "that username is taken") from None


async def login(call: Call) -> Any:
    """Exchange username and password for a session token, also set as an HttpOnly cookie."""
    require_database(call.app)
    body: s.LoginBody = call.body
    try:
        token, user, session = await call.app[ACCOUNTS].login(body.username, body.password,
                                                              auth.peer_ip(call.request), call.meta())
    except BadCredentials:
        raise ApiError(401, "AUTH_REQUIRED", "wrong username or password") from None
    response = json_response(s.LoginResult(token=token, expires_at=session["expires_at"], user=s.User(**user)))
    max_age = int(call.app[CONFIG].session_ttl_s)
    response.set_cookie(auth.SESSION_COOKIE, token, max_age=max_age, path="/", httponly=True, samesite="Strict",
                        secure=call.request.secure)
    return response


async def logout(call: Call) -> Any:
    """End the session used for this request (a token or the admin key has none: nothing to end)."""
    logged_out = False
    if call.who.via == "session":
        token = auth.bearer_token(call.request)
        assert token is not None
        logged_out = await call.app[ACCOUNTS].logout(token, call.meta())
    response = json_response(s.LogoutResult(logged_out=logged_out))
    response.del_cookie(auth.SESSION_COOKIE, path="/")
    return response


async def me(call: Call) -> Any:
    """The caller."""
    who = call.who
    user = await call.app[ACCOUNTS].user(who.user_id) if who.user_id is not None else None
    if user is None and who.via == "admin_key" and call.app[DATABASE].ready:
        await call.app[ACCOUNT_ADMIN].ensure_builtin()  # not made at start (PostgreSQL was late): now
        user = await call.app[ACCOUNTS].user(who.user_id) if who.user_id is not None else None
    return {"actor": who.actor, "role": who.role, "via": who.via, "user_id": who.user_id, "user": user}


async def session_status(call: Call) -> Any:
    """Whether the caller is signed in, and as whom: a signed-out visitor is an answer here, not a 401."""
    if call.principal is None:
        return {"authenticated": False}
    return {"authenticated": True, **await me(call)}


def _owner(call: Call, requested: str | None) -> str:
    """Whose token: the caller's own; an admin may name any account (the admin key must)."""
    who = call.who
    if requested is not None and requested != who.user_id:
        if not who.is_admin:
            raise ApiError(403, "FORBIDDEN", "you can only manage your own tokens")
        return requested
    if who.user_id is None:
        raise validation_failed("this credential has no account of its own: give username or user_id")
    return who.user_id


async def create_token(call: Call) -> Any:
    """Issue an API token; its value is in this response only."""
    require_database(call.app)
    body: s.NewTokenBody = call.body
    requested = body.user_id
    if body.username is not None:
        if body.user_id is not None:
            raise validation_failed("give user_id or username, not both")
        if not call.who.is_admin:
            raise ApiError(403, "FORBIDDEN", "you can only manage your own tokens")
        try:
            requested = await call.app[ACCOUNT_ADMIN].user_id_by_name(body.username)
        except NoSuchUser:
            raise ApiError(404, "NOT_FOUND", f"no account named {body.username!r}") from None
    owner = _owner(call, requested)
    try:
        token, info = await call.app[ACCOUNTS].create_token(owner, body.name, body.expires_in_s, call.meta())
    except NoSuchUser:
        raise ApiError(404, "NOT_FOUND", "no such account") from None
    except TooManyTokens as exc:
        raise ApiError(409, "TOO_MANY_TOKENS", f"this account already has {exc.args[0]} live API tokens "
                       "(the most allowed): revoke one first") from None
    return {**info, "token": token}


async def list_tokens(call: Call) -> Any:
    """Live API tokens: your own (admins: everyone's)."""
    require_database(call.app)
    who = call.who
    items = await call.app[ACCOUNTS].list_tokens(None if who.is_admin else who.user_id)
    return {"items": items}


async def revoke_token(call: Call) -> Any:
    """Revoke one of your tokens (admins: anyone's). Someone else's token is simply not found."""
    require_database(call.app)
    who = call.who
    token_id = call.path("id")
    try:
        row = await call.app[ACCOUNTS].revoke_token(token_id, None if who.is_admin else who.user_id, call.meta())
    except NoSuchToken:
        raise ApiError(404, "NOT_FOUND", "no such token") from None
    return {"id": row["id"], "revoked": True}


OPERATIONS = [
    Operation("POST", "/api/v1/auth/register", register, "register", "Create an account (admin)", "accounts",
              role=None, body=s.RegisterBody, response=s.User, status=201, errors=(403, 409, 503),
              description="Admins only; in dev mode with STOKER_OPEN_REGISTRATION=1 anyone may create a user."),
    Operation("POST", "/api/v1/auth/login", login, "login", "Sign in: a session token and cookie", "accounts",
              role=None, body=s.LoginBody, response=s.LoginResult, limit="login", errors=(401, 503)),
    Operation("POST", "/api/v1/auth/logout", logout, "logout", "End this session", "accounts",
              response=s.LogoutResult),
    Operation("GET", "/api/v1/auth/me", me, "me", "Who am I", "accounts", response=s.Me),
    Operation("GET", "/api/v1/auth/session", session_status, "session_status",
              "Am I signed in (no credential, or a stale one: authenticated false)", "accounts", role=None,
              response=s.SessionStatus),
    Operation("POST", "/api/v1/tokens", create_token, "create_token", "Issue an API token (shown once)", "accounts",
              body=s.NewTokenBody, response=s.NewToken, status=201, errors=(404, 409, 503)),
    Operation("GET", "/api/v1/tokens", list_tokens, "list_tokens", "List your API tokens", "accounts",
              response=s.TokenList, errors=(503,)),
    Operation("DELETE", "/api/v1/tokens/{id}", revoke_token, "revoke_token", "Revoke an API token", "accounts",
              response=s.RevokeResult, errors=(404, 503)),
]
