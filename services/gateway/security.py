"""Security headers on every response, and CORS only for the origins STOKER_CORS_ORIGINS names."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.typedefs import Middleware

from services.gateway.resources import CORRELATION_ID

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
}
CORS_METHODS = "GET, POST, PUT, DELETE"
CORS_HEADERS = "Authorization, Content-Type, X-Correlation-Id"


def _apply(request: web.Request, response: web.StreamResponse, origins: tuple[str, ...]) -> None:
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    if CORRELATION_ID in request:
        response.headers.setdefault("X-Correlation-Id", request[CORRELATION_ID])
    if request.path.startswith("/api/"):
        response.headers.setdefault("Cache-Control", "no-store")
    origin = request.headers.get("Origin")
    if origins and origin in origins:
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Access-Control-Allow-Credentials"] = "true"
        response.headers["Access-Control-Expose-Headers"] = "Retry-After, X-Correlation-Id"
        response.headers.add("Vary", "Origin")


def security_middleware(origins: tuple[str, ...]) -> Middleware:
    """Headers on every response (errors included); CORS preflights answered for allowed origins only."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if (origins and request.method == "OPTIONS" and request.headers.get("Origin") in origins
                and "Access-Control-Request-Method" in request.headers):
            response: web.StreamResponse = web.Response(status=204, headers={
                "Access-Control-Allow-Methods": CORS_METHODS, "Access-Control-Allow-Headers": CORS_HEADERS,
                "Access-Control-Max-Age": "600"})
        else:
            response = await handler(request)
        if not response.prepared:  # streamed responses (SSE) set their headers before preparing
            _apply(request, response, origins)
        return response

    return middleware


def prepare_headers(request: web.Request, response: web.StreamResponse, origins: tuple[str, ...]) -> None:
    """Apply the same headers to a response a handler streams itself."""
    _apply(request, response, origins)
