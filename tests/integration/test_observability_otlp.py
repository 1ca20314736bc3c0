"""With ``OTEL_EXPORTER_OTLP_ENDPOINT`` set, spans leave the process as OTLP/HTTP protobuf to ``/v1/traces``."""

from __future__ import annotations

import asyncio

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from libs.observability import tracing

pytestmark = pytest.mark.timeout(20)
trace_service_pb2 = pytest.importorskip("opentelemetry.proto.collector.trace.v1.trace_service_pb2")
pytest.importorskip("opentelemetry.exporter.otlp.proto.http.trace_exporter")


async def test_spans_are_exported_with_otlp_http_to_the_configured_collector() -> None:
    received: list[tuple[str, bytes]] = []

    async def collect(request: web.Request) -> web.Response:
        received.append((request.headers.get("Content-Type", ""), await request.read()))
        return web.Response(body=trace_service_pb2.ExportTraceServiceResponse().SerializeToString(),
                            content_type="application/x-protobuf")

    app = web.Application()
    app.router.add_post("/v1/traces", collect)
    async with TestServer(app) as collector:
        env = {"OTEL_EXPORTER_OTLP_ENDPOINT": str(collector.make_url("/")), "OTEL_SERVICE_NAME": "pool-test"}
        try:
            provider = tracing.setup_tracing("pool", env)
            assert provider is not None
            with tracing.span("pool", "pool.reconcile"):
                pass
            await asyncio.to_thread(provider.shutdown)  # flushes (the exporter's thread posts to this loop)
        finally:
            tracing.reset()
    [(content_type, body)] = received
    request = trace_service_pb2.ExportTraceServiceRequest.FromString(body)
    [resource_spans] = request.resource_spans
    service = {a.key: a.value.string_value for a in resource_spans.resource.attributes}["service.name"]
    names = [s.name for scope in resource_spans.scope_spans for s in scope.spans]
    assert content_type == "application/x-protobuf" and service == "pool-test" and names == ["pool.reconcile"]
