"""The one JSON error shape, {"error": {"code", "message", "details"?}}, and the middleware that enforces it."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from libs.events import codec

log = logging.getLogger("stoker.gateway")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

CODES = {
    400: "BAD_REQUEST",
    401: "AUTH_REQUIRED",
    403: "FORBIDDEN",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    409: "CONFLICT",
    413: "PAYLOAD_TOO_LARGE",
    415: "UNSUPPORTED_MEDIA_TYPE",
    422: "VALIDATION_FAILED",
    429: "RATE_LIMITED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
}


class ApiError(Exception):
    """A refusal with an HTTP status, a stable code and a message safe to show (never a secret)."""

    def __init__(self, status: int, code: str, message: str, *, details: Any = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.details, self.headers = details, headers


def validation_failed(message: str, details: Any = None, status: int = 422) -> ApiError:
    """A client sent something that does not fit the schema."""
    return ApiError(status, "VALIDATION_FAILED", message, details=details)


def error_body(code: str, message: str, details: Any = None) -> dict[str, Any]:
    """The error shape as builtins (``details`` only when there are some)."""
    error: dict[str, Any] = {"code": code, "message": message}
    if details is not None:
        error["details"] = details
    return {"error": error}


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None,
                   details: Any = None) -> web.Response:
    """A JSON error response in the house shape."""
    return web.Response(body=codec.encode(error_body(code, message, details)), status=status,
                        content_type="application/json", headers=headers)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn refusals, HTTP errors and unexpected exceptions into the JSON shape; never leak a stack trace."""
    try:
        return await handler(request)
    except ApiError as exc:
        return error_response(exc.status, exc.code, exc.message, exc.headers, exc.details)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        keep = {k: exc.headers[k] for k in ("Allow", "Retry-After") if k in exc.headers}
        return error_response(exc.status, CODES.get(exc.status, f"HTTP_{exc.status}"), exc.reason, keep or None)
    except Exception:
        log.exception("unhandled error in %s %s", request.method, request.path)
        return error_response(500, "INTERNAL", "internal server error")
