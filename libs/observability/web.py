"""An aiohttp middleware that puts every HTTP request in a server span, continuing the caller's trace."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.typedefs import Middleware
from opentelemetry.trace import Span, SpanKind, StatusCode

from libs.observability import tracing

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
UNMATCHED = "unmatched"


def route_template(request: web.Request) -> str:
    """The route template (``/api/v1/generations/{id}``), never the raw path: span names stay few."""
    resource = getattr(getattr(request.match_info, "route", None), "resource", None)
    if resource is None or getattr(request.match_info, "http_exception", None) is not None:
        return UNMATCHED
    return str(resource.canonical)


def _finish(span: Span, status: int) -> None:
    span.set_attribute("http.response.status_code", status)
    if status >= 500:
        span.set_status(StatusCode.ERROR, f"HTTP {status}")


def trace_middleware(service: str, skip: Callable[[web.Request], bool] | None = None) -> Middleware:
    """Start (or continue, from a ``traceparent`` header) a server span of ``service`` per request.

    Inside the handler the span is current: ``tracing.inject()`` gives the headers for NATS
    requests, and events appended there carry the trace. ``skip`` leaves requests out (long
    WebSockets, health checks).
    """
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if skip is not None and skip(request):
            return await handler(request)
        route = route_template(request)
        attributes = {"http.request.method": request.method, "http.route": route, "url.path": request.path,
                      "url.scheme": request.scheme}
        answered: web.HTTPException | None = None
        with tracing.continued(service, f"{request.method} {route}", headers=request.headers, kind=SpanKind.SERVER,
                               attributes=attributes) as span:
            try:
                response = await handler(request)
            except web.HTTPException as exc:  # aiohttp's way to answer 3xx/4xx: re-raised outside the span,
                _finish(span, exc.status)  # which would otherwise count it as a failure
                answered = exc
            else:
                _finish(span, response.status)
        if answered is not None:
            raise answered
        return response

    return middleware
