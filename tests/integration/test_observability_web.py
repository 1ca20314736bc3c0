"""The HTTP middleware the gateway adds: a server span per request, continuing the client's trace."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from libs.observability import tracing
from libs.observability.web import trace_middleware

pytestmark = pytest.mark.timeout(20)
CLIENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    tracing.use_exporter(exporter)
    yield exporter
    tracing.reset()


async def outgoing(request: web.Request) -> web.Response:
    """Answers with the headers a NATS request sent from here would carry."""
    if request.match_info["id"] == "missing":
        raise web.HTTPNotFound()
    if request.match_info["id"] == "broken":
        raise RuntimeError("bug")
    return web.json_response(tracing.inject())


async def health(request: web.Request) -> web.Response:
    return web.Response(text="ok")


async def test_each_request_is_a_server_span_that_continues_the_callers_trace(spans: InMemorySpanExporter) -> None:
    app = web.Application(middlewares=[trace_middleware("gateway", skip=lambda r: r.path == "/health")])
    app.router.add_get("/things/{id}", outgoing)
    app.router.add_get("/health", health)
    async with TestClient(TestServer(app)) as client:
        sent = await (await client.get("/things/42", headers={"traceparent": CLIENT})).json()
        assert (await client.get("/things/missing")).status == 404
        assert (await client.get("/things/broken")).status == 500
        assert (await client.get("/health")).status == 200
    finished = spans.get_finished_spans()
    assert not [s for s in finished if s.name.startswith("GET /health")]  # skipped
    # Only this app's spans (a background task of an earlier test may still end a span of its own here).
    first, missing, broken = [s for s in finished if s.name.startswith("GET /things")]
    assert (first.name, first.kind) == ("GET /things/{id}", SpanKind.SERVER)
    assert first.resource.attributes["service.name"] == "gateway" and first.attributes["http.response.status_code"] == 200
    assert f"{first.context.trace_id:032x}" == tracing.trace_id(CLIENT) and first.parent is not None
    assert sent["traceparent"].split("-")[2] == f"{first.context.span_id:016x}"  # NATS headers name this span
    assert missing.parent is None and missing.status.status_code != StatusCode.ERROR  # a 404 is an answer
    assert missing.attributes["http.response.status_code"] == 404
    assert broken.status.status_code == StatusCode.ERROR
