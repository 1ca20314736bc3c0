"""Declared operations and the one pipeline every API request goes through.

Each API module lists ``Operation``s: method, path, role, request/query/response types. The
pipeline does, in order: "this machine only" check, authentication (bounded: a frozen database
is a quick 503; a wrong credential counts against the address, a wrong admin key is recorded),
API rate limits (per credential and per account), role check, CSRF check, parsing (into Structs,
once), the sign-in limit (per address and per account; only refused credentials count), the
handler, and an ``AdminActionPerformed`` event for every admin write. The OpenAPI document is
built from the same declarations, so the docs cannot drift from what is enforced.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import asyncpg
import msgspec
from aiohttp import web

from libs.events import Aggregate, Metadata, codec, subjects
from libs.events import accounts as acct
from libs.events.ids import is_subject_token, new_id
from services.gateway import auth
from services.gateway.auth import Principal, Role
from services.gateway.dependencies import Unavailable, bounded
from services.gateway.errors import ApiError, validation_failed
from services.gateway.ratelimit import retry_after
from services.gateway.resources import (
    CLOCK,
    CONFIG,
    CORRELATION_ID,
    DATABASE,
    LIMITS,
    NATS,
    RECORDER,
)

log = logging.getLogger("stoker.gateway")

Handler = Callable[["Call"], Awaitable[Any]]
PATH_PARAM = re.compile(r"\{(\w+)\}")
SAFE_PATH_VALUE = re.compile(r"^[A-Za-z0-9_\-:.]{1,128}$")
DB_DOWN = (OSError, asyncio.TimeoutError, asyncpg.InterfaceError, asyncpg.PostgresConnectionError,
           asyncpg.CannotConnectNowError, asyncpg.TooManyConnectionsError, asyncpg.UndefinedTableError)
_MAX_BODY_ERRORS = 300
MAX_PENDING_RECORDS = 100  # background records of wrong admin keys (beyond: logged, not recorded)


@dataclass(frozen=True)
class Operation:
    """One API operation: what it accepts, who may call it, and what it answers."""

    method: str
    path: str
    handler: Handler
    name: str
    summary: str
    tag: str
    role: Role | None = "user"  # None: public
    body: Any = None  # a Struct type (forbid_unknown_fields) or None
    query: Any = None  # a Struct type of query parameters, or None
    response: Any = None  # the 2xx response type, for the docs
    status: int = 200
    errors: tuple[int, ...] = ()
    limit: Literal["api", "login", "none"] = "api"
    loopback_only: bool = False
    media_type: str = "application/json"  # of a success; several (or ranges like image/*) comma-separated
    description: str = ""
    json_any_content_type: bool = False  # ComfyUI clients post JSON with urllib's default (form) content type
    error_bodies: tuple[tuple[int, Any], ...] = ()  # (status, Struct): another error shape it may answer (ComfyUI's)

    @property
    def path_params(self) -> list[str]:
        """Names of the ``{placeholders}`` in the path."""
        return PATH_PARAM.findall(self.path)


@dataclass(frozen=True, slots=True)
class Call:
    """What a handler gets: the parsed request and who made it."""

    request: web.Request
    principal: Principal | None
    body: Any
    query: Any
    correlation_id: str

    @property
    def app(self) -> web.Application:
        """The application (for its resources)."""
        return self.request.app

    def path(self, name: str) -> str:
        """A path parameter (already checked to be a plain id)."""
        return self.request.match_info[name]

    @property
    def who(self) -> Principal:
        """The authenticated caller (operations with a role always have one)."""
        assert self.principal is not None
        return self.principal

    def meta(self) -> Metadata:
        """Envelope metadata for events this request causes."""
        actor = self.principal.actor if self.principal else "anonymous"
        # The trace context comes from the request's server span (EventStore.append reads it).
        return Metadata(actor=actor, correlation_id=self.correlation_id)


def json_response(value: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
    """Encode a Struct or builtins as a JSON response (msgspec: datetimes as RFC 3339)."""
    return web.Response(body=codec.encode(value), status=status, content_type="application/json", headers=headers)


def correlation_id(request: web.Request) -> str:
    """The caller's X-Correlation-Id when it is a plain id, else a new one."""
    given = request.headers.get("X-Correlation-Id", "")
    return given if len(given) <= 64 and is_subject_token(given) else new_id()


def _parse_query(op: Operation, request: web.Request) -> Any:
    if op.query is None:
        return None
    try:
        return msgspec.convert(dict(request.query), op.query, strict=False)
    except msgspec.ValidationError as exc:
        raise validation_failed(f"invalid query: {str(exc)[:_MAX_BODY_ERRORS]}") from None


async def _parse_body(decoder: msgspec.json.Decoder[Any] | None, request: web.Request, any_type: bool) -> Any:
    if decoder is None:
        return None
    try:
        async with asyncio.timeout(request.app[CONFIG].body_timeout_s):
            data = await request.read()
    except TimeoutError:
        raise ApiError(408, "REQUEST_TIMEOUT", "the request body did not arrive in time",
                       headers={"Connection": "close"}) from None
    if not data.strip():
        data = b"{}"
    elif request.content_type != "application/json" and not any_type:
        raise ApiError(415, "UNSUPPORTED_MEDIA_TYPE", "send the body as application/json")
    try:
        return decoder.decode(data)
    except msgspec.ValidationError as exc:
        raise validation_failed(str(exc)[:_MAX_BODY_ERRORS]) from None
    except msgspec.DecodeError as exc:
        raise validation_failed(f"malformed JSON: {str(exc)[:_MAX_BODY_ERRORS]}", status=400) from None
    except RecursionError:  # msgspec's own depth limit (about 1,000 levels)
        raise validation_failed("malformed JSON: nested too deep", status=400) from None


def _check_path(op: Operation, request: web.Request) -> None:
    for name in op.path_params:
        if not SAFE_PATH_VALUE.match(request.match_info.get(name, "")):
            raise ApiError(404, "NOT_FOUND", f"no such {name}")


def _sign_in_keys(ip: str, body: Any) -> tuple[str, ...]:
    """The buckets a sign-in attempt counts against: its address and the account it names."""
    username = getattr(body, "username", None)
    if isinstance(username, str) and username:
        return (f"ip:{ip}", f"account:{username.strip().lower()[:128]}")
    return (f"ip:{ip}",)


def _limited(wait: float, what: str) -> ApiError:
    return ApiError(429, "RATE_LIMITED", f"too many {what}; retry later", details={"retry_after_s": round(wait, 1)},
                    headers={"Retry-After": retry_after(wait)})


async def _principal(request: web.Request, ip: str, optional: bool) -> Principal | None:
    """The caller; on a public operation a stale credential (an old cookie) just means anonymous."""
    app = request.app
    db = app[DATABASE]
    try:
        # A frozen database: 503 soon, not when its queries time out.
        return await bounded(auth.authenticate(request, admin_key=app[CONFIG].admin_key, pool=db.pool,
                                               clock=app[CLOCK], available=lambda: db.healthy),
                             app[CONFIG].dependency_timeout_s)
    except TimeoutError:
        db.mark(False)
        raise
    except ApiError:
        if optional:
            return None
        # Failed credentials count against the address: guessing keys is rate limited too.
        wait = app[LIMITS].api.hit(f"ip:{ip}")
        if wait:
            raise _limited(wait, "failed authentication attempts") from None
        if auth.ADMIN_HEADER in request.headers:
            _note_rejected_admin_key(request, ip)
        raise


def _note_rejected_admin_key(request: web.Request, ip: str) -> None:
    """Record a wrong admin key (in the background: the refusal must not wait on NATS; bounded)."""
    app = request.app
    pending = app[LIMITS].pending
    if len(pending) >= MAX_PENDING_RECORDS:
        log.warning("wrong admin key from %s: not recorded (too many records pending)", ip)
        return
    event = acct.AdminKeyRejected(ip=ip, method=request.method, path=request.path[:200])
    meta = Metadata(actor=f"anonymous:{ip}", correlation_id=request.get(CORRELATION_ID) or new_id())

    async def record() -> None:
        try:
            async with asyncio.timeout(10):
                await app[RECORDER].record(Aggregate(subjects.ACCOUNTS, acct.ADMIN, "rejected"), [event], meta)
        except Exception as exc:  # noqa: BLE001 -- the refusal stands; a lost record is logged
            log.error("could not record a wrong admin key from %s: %s", ip, type(exc).__name__)

    task = asyncio.create_task(record(), name="record-admin-key-rejected")
    pending.add(task)
    task.add_done_callback(pending.discard)


async def _record_admin_action(call: Call, op: Operation, outcome: str, status: int) -> None:
    """Every admin write becomes an AdminActionPerformed event (method, path, outcome; never a body)."""
    who = call.who
    target = ",".join(call.request.match_info.get(n, "") for n in op.path_params)
    event = acct.AdminActionPerformed(action=op.name, target=target[:200], outcome=outcome,
                                      details={"method": op.method, "path": op.path, "status": status,
                                               "via": who.via, "ip": auth.peer_ip(call.request)})
    agg_id = who.actor.split(":", 1)[1] if who.via == "admin_key" else (who.user_id or "unknown")
    try:
        await call.app[RECORDER].record(Aggregate(subjects.ACCOUNTS, acct.ADMIN, agg_id), [event], call.meta())
    except Exception as exc:  # noqa: BLE001 -- the action happened; a lost event is logged, not a failure
        log.error("could not record admin action %s (%s): %s", op.name, outcome, type(exc).__name__)


def endpoint(op: Operation) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """The aiohttp handler running ``op`` through the pipeline."""

    decoder = msgspec.json.Decoder(op.body) if op.body is not None else None

    async def handle(request: web.Request) -> web.StreamResponse:
        app = request.app
        ip = auth.peer_ip(request)
        cid = correlation_id(request)
        request[CORRELATION_ID] = cid
        if op.loopback_only and not auth.is_local(request):
            raise ApiError(403, "FORBIDDEN", "this operation is only accepted from this machine (loopback)")
        try:
            # Probes and docs never look at credentials: they answer even while PostgreSQL does not.
            public = op.role is None and op.limit == "none"
            principal = None if public else await _principal(request, ip, optional=op.role is None)
        except (*DB_DOWN, Unavailable):
            raise ApiError(503, "UNAVAILABLE", "the credential store (PostgreSQL) is unavailable; retry",
                           headers={"Retry-After": "5"}) from None
        if op.limit == "api":
            key = principal.rate_key if principal else f"ip:{ip}"
            wait = app[LIMITS].api.hit(key)
            if not wait and principal is not None and principal.user_id is not None:
                wait = app[LIMITS].account.hit(f"user:{principal.user_id}")  # all its tokens and sessions
            if wait:
                raise _limited(wait, "requests")
        if op.role is not None:
            if principal is None:
                raise ApiError(401, "AUTH_REQUIRED", "sign in, or send an API token or the admin key",
                               headers={"WWW-Authenticate": 'Bearer realm="stoker"'})
            if not principal.allows(op.role):
                raise ApiError(403, "FORBIDDEN", f"this operation needs the {op.role} role")
        auth.check_cookie_origin(request, app[CONFIG].cors_origins)
        _check_path(op, request)
        body = await _parse_body(decoder, request, op.json_any_content_type)
        call = Call(request, principal, body, _parse_query(op, request), cid)
        audited = principal is not None and principal.is_admin and op.method != "GET"
        sign_in = _sign_in_keys(ip, body) if op.limit == "login" else ()
        if sign_in and (wait := app[LIMITS].login.hit_all(sign_in)):
            raise _limited(wait, "failed sign-in attempts")
        counted = False  # a sign-in attempt counts only when its credentials are refused
        try:
            result = await op.handler(call)
        except ApiError as exc:
            counted = exc.status == 401
            if audited:
                await _record_admin_action(call, op, exc.code, exc.status)
            raise
        except (*DB_DOWN, Unavailable) as exc:
            if audited:
                await _record_admin_action(call, op, "UNAVAILABLE", 503)
            what = "NATS" if isinstance(exc, Unavailable) and exc.what == "nats" else "the database (PostgreSQL)"
            raise ApiError(503, "UNAVAILABLE", f"{what} is unavailable; retry", headers={"Retry-After": "5"}) from None
        except Exception:
            if audited:
                await _record_admin_action(call, op, "INTERNAL", 500)
            raise
        finally:
            if sign_in and not counted:
                app[LIMITS].login.refund(sign_in)
        if audited:
            status = result.status if isinstance(result, web.StreamResponse) else op.status
            await _record_admin_action(call, op, "ok", status)
        if isinstance(result, web.StreamResponse):
            return result
        return json_response(result, op.status)

    handle.__name__ = op.name
    handle.__doc__ = op.summary
    return handle


def add_operations(app: web.Application, operations: Iterable[Operation]) -> list[Operation]:
    """Register operations on the app's router."""
    added = []
    for op in operations:
        app.router.add_route(op.method, op.path, endpoint(op), name=op.name)
        added.append(op)
    return added


def require_nats(app: web.Application) -> None:
    """503 at once while NATS is not connected (a JetStream read would wait out its whole timeout)."""
    if not app[NATS].is_connected:
        raise Unavailable("nats")


def require_postgres(app: web.Application) -> None:
    """503 at once while PostgreSQL is known not to answer (rather than waiting out a query timeout)."""
    if not app[DATABASE].healthy:
        raise ApiError(503, "UNAVAILABLE", "the database (PostgreSQL) does not answer; retry",
                       headers={"Retry-After": "5"})


def require_database(app: web.Application) -> None:
    """503 until the gateway's tables exist (PostgreSQL was down at start and is still being waited for),
    and at once while PostgreSQL does not answer."""
    if not app[DATABASE].ready:
        raise ApiError(503, "UNAVAILABLE", "the account database is not ready yet; retry", headers={"Retry-After": "5"})
    require_postgres(app)
