"""Who is calling: the admin key, an API token, or a session (bearer or cookie), and what role they have."""

from __future__ import annotations

import functools
import hmac
import ipaddress
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import asyncpg
from aiohttp import web

from libs.contracts.audit import fingerprint
from services.gateway import repository
from services.gateway.dependencies import Unavailable
from services.gateway.errors import ApiError
from services.gateway.passwords import is_token_shaped, token_digest
from services.gateway.proxy import CLIENT

Role = Literal["user", "admin"]
Via = Literal["admin_key", "token", "session"]
ADMIN_HEADER = "X-Admin-Api-Key"
SESSION_COOKIE = "stoker_session"
# ComfyUI clients cannot always set headers (a WebSocket, an <img> of /view): there the token may be ?token=.
QUERY_TOKEN_PREFIX = "/comfy/"
ROLES_RANK = {"user": 1, "admin": 2}


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller. ``actor`` is what events record: never a key or a token."""

    role: Role
    actor: str
    via: Via
    user_id: str | None = None
    username: str | None = None
    credential_id: str | None = None  # the token or session id used

    @property
    def is_admin(self) -> bool:
        """Admin role, by key or by account."""
        return self.role == "admin"

    @property
    def rate_key(self) -> str:
        """The rate-limit bucket of this caller: its credential, not its address."""
        return f"cred:{self.credential_id or self.actor}"

    def allows(self, role: Role) -> bool:
        """Whether this caller has at least ``role``."""
        return ROLES_RANK[self.role] >= ROLES_RANK[role]


@functools.lru_cache(maxsize=4)
def admin_actor(admin_key: str) -> str:
    """The actor of the admin key: an HMAC fingerprint, the same one the audit log shows."""
    return f"admin:{fingerprint(admin_key)}"


def builtin_admin_id(admin_key: str) -> str:
    """The account id of the admin key's built-in admin account: stable for a key, derived from its fingerprint."""
    return f"admin-{fingerprint(admin_key)}"


def peer_ip(request: web.Request) -> str:
    """The client's address: the TCP peer's, or what a trusted proxy says it is (never another header)."""
    if CLIENT in request:
        return request[CLIENT].ip
    transport = request.transport
    peer = transport.get_extra_info("peername") if transport is not None else None
    if isinstance(peer, tuple) and peer:
        return str(peer[0])
    return "unknown"


def is_local(request: web.Request) -> bool:
    """Whether the client is this machine: a loopback address that no untrusted proxy forwarded for.

    A reverse proxy on the same host connects from loopback; unless it is a configured trusted
    proxy (then the client is whoever it names), its forwarding headers give it away and it gets
    no "this machine" privileges.
    """
    if CLIENT in request and request[CLIENT].untrusted_forwarding:
        return False
    return is_loopback(peer_ip(request))


def is_loopback(address: str) -> bool:
    """Whether an address is this machine's loopback (IPv4, IPv6, or IPv4-mapped IPv6)."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback


def _unauthorized(message: str) -> ApiError:
    return ApiError(401, "AUTH_REQUIRED", message, headers={"WWW-Authenticate": 'Bearer realm="stoker"'})


def bearer_token(request: web.Request) -> str | None:
    """The token sent as ``Authorization: Bearer``, as ``?token=`` (ComfyUI routes only) or in the session
    cookie, if any."""
    header = request.headers.get("Authorization")
    if header is not None:
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise _unauthorized("use Authorization: Bearer <token>")
        return value.strip()
    if request.path.startswith(QUERY_TOKEN_PREFIX) and request.query.get("token"):
        return request.query["token"]
    return request.cookies.get(SESSION_COOKIE) or None


async def authenticate(request: web.Request, *, admin_key: str, pool: asyncpg.Pool,
                       clock: Callable[[], datetime], available: Callable[[], bool] = lambda: True) -> Principal | None:
    """The caller, None when no credential was sent; 401 when one was sent and is not valid;
    Unavailable when a token must be looked up and the database is known not to answer."""
    presented = request.headers.get(ADMIN_HEADER)
    if presented is not None:
        # surrogateescape: a header with bytes that are not UTF-8 simply does not match
        if admin_key and hmac.compare_digest(presented.encode("utf-8", "surrogateescape"), admin_key.encode()):
            return Principal(role="admin", actor=admin_actor(admin_key), via="admin_key",
                             user_id=builtin_admin_id(admin_key))
        raise _unauthorized("invalid admin key")
    token = bearer_token(request)
    if token is None:
        return None
    if not is_token_shaped(token):
        raise _unauthorized("invalid or expired token")
    if not available():
        raise Unavailable("postgres")
    async with pool.acquire() as conn:
        row = await repository.bearer(conn, token_digest(token), clock())
    if row is None:
        raise _unauthorized("invalid or expired token")
    via: Via = "session" if row["kind"] == "session" else "token"
    return Principal(role=row["role"], actor=f"user:{row['user_id']}", via=via, user_id=row["user_id"],
                     username=row["username"], credential_id=row["id"])


def by_cookie(request: web.Request) -> bool:
    """Whether the request's credential is the session cookie (no header, no ``?token=``, no admin key)."""
    if ADMIN_HEADER in request.headers or "Authorization" in request.headers:
        return False
    if request.path.startswith(QUERY_TOKEN_PREFIX) and request.query.get("token"):
        return False
    return SESSION_COOKIE in request.cookies


def check_cookie_origin(request: web.Request, allowed: tuple[str, ...], *, reads_too: bool = False) -> None:
    """Refuse cross-site state changes riding on the session cookie (CSRF), beyond SameSite=Strict.

    ``reads_too``: also for GET (a WebSocket or an event stream, which a foreign page could open with
    the visitor's cookie and read).
    """
    if request.method in ("GET", "HEAD", "OPTIONS") and not reads_too:
        return
    if not by_cookie(request):
        return
    origin = request.headers.get("Origin")
    if origin is None:
        return
    own = f"{request.scheme}://{request.host}"
    if origin != own and origin not in allowed:
        hint = ""
        if origin.partition("://")[2] == request.host:  # same host, other scheme: a TLS proxy nobody declared
            hint = " (behind a TLS-terminating proxy? list it in STOKER_TRUSTED_PROXIES)"
        raise ApiError(403, "FORBIDDEN", "cross-origin request with a session cookie refused" + hint)
