"""Trace context through NATS headers and envelopes, per-service providers, OTEL_* settings, audit and node spans."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from opentelemetry.sdk.trace.export import SpanExporter
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from libs.events import Metadata
from libs.observability import tracing
from services.audit.domain import Fact
from services.audit.spans import write_spans
from services.generation.comfy_spans import NodeSpans

PARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
OTHER = "00-11111111111111111111111111111111-2222222222222222-01"


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    tracing.use_exporter(exporter)
    yield exporter
    tracing.reset()


def test_headers_carry_the_current_span_and_continue_it_on_the_other_side(spans: InMemorySpanExporter) -> None:
    with tracing.span("gateway", "request", kind=SpanKind.SERVER) as root:
        headers = tracing.inject({"Nats-Msg-Id": "x"})
    assert headers["Nats-Msg-Id"] == "x" and tracing.trace_id(headers["traceparent"]) == f"{root.get_span_context().trace_id:032x}"
    with tracing.continued("generation", "cmd.gen.submit", headers=headers, kind=SpanKind.SERVER):
        pass
    server = next(s for s in spans.get_finished_spans() if s.name == "cmd.gen.submit")
    assert server.parent is not None and server.parent.span_id == root.get_span_context().span_id
    assert server.resource.attributes["service.name"] == "generation"
    assert root.resource.attributes["service.name"] == "gateway"  # type: ignore[attr-defined]


def test_an_envelope_traceparent_continues_when_headers_have_none_and_nothing_starts_a_root(
        spans: InMemorySpanExporter) -> None:
    with tracing.continued("generation", "from envelope", headers={"Nats-Msg-Id": "x"}, traceparent=PARENT):
        pass
    with tracing.span("pool", "outer"), tracing.continued("pool", "fresh", headers=None):
        pass
    with tracing.span("pool", "outer2"), tracing.root_span("pool", "pass"):
        pass
    by_name = {s.name: s for s in spans.get_finished_spans()}
    assert f"{by_name['from envelope'].context.trace_id:032x}" == tracing.trace_id(PARENT)
    assert by_name["fresh"].parent is None and by_name["pass"].parent is None  # never the ambient span
    assert tracing.extract(None) is not None and not tracing.has_parent(tracing.extract({"traceparent": "junk"}))
    assert tracing.has_parent(tracing.extract({"Traceparent": PARENT}))  # HTTP header names in any case


def test_metadata_takes_the_current_trace_unless_it_names_one(spans: InMemorySpanExporter) -> None:
    meta = Metadata(actor="pool")
    assert tracing.with_trace(meta) is meta  # outside a span: unchanged
    with tracing.span("pool", "work") as current:
        traced = tracing.with_trace(meta)
        assert tracing.with_trace(Metadata(actor="x", traceparent=OTHER)).traceparent == OTHER
    assert tracing.trace_id(traced.traceparent) == f"{current.get_span_context().trace_id:032x}"
    assert tracing.trace_id("nonsense") is None and tracing.trace_id(None) is None


def has_otlp() -> bool:
    try:
        return importlib.util.find_spec("opentelemetry.exporter.otlp.proto.http") is not None
    except ModuleNotFoundError:
        return False


def test_setup_reads_the_otel_variables() -> None:
    try:
        assert tracing.exporter_from({}) is None
        assert tracing.exporter_from({"OTEL_TRACES_EXPORTER": "none"}) is None
        otlp = tracing.exporter_from({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318/"})
        if not has_otlp():
            assert otlp is None  # the exporter package is optional: no export, a warning
        else:
            assert type(otlp).__name__ == "OTLPSpanExporter"
            assert otlp._endpoint == "http://collector:4318/v1/traces"  # type: ignore[union-attr]
        assert isinstance(tracing.exporter_from({"OTEL_TRACES_EXPORTER": "console"}), SpanExporter)
        provider = tracing.setup_tracing("pool", {"OTEL_SERVICE_NAME": "pool-east"})
        assert provider is not None and provider.resource.attributes["service.name"] == "pool-east"
        with tracing.span("pool", "recorded, not exported") as span:
            assert span.get_span_context().is_valid  # trace ids reach logs and events without an exporter
        assert tracing.setup_tracing("pool", {"OTEL_SDK_DISABLED": "true"}) is None
        with tracing.span("pool", "off") as span:
            assert not span.get_span_context().is_valid
    finally:
        tracing.reset()


def fact(traceparent: str | None, n: int) -> Fact:
    return Fact(f"e{n}", "EVENTS_GEN", n, "ev.gen.job.j", "event", "T", "job", "j", "gen",
                datetime.now(UTC), "{}", traceparent=traceparent)


def test_an_audit_write_continues_its_one_trace_or_joins_each_of_many(spans: InMemorySpanExporter) -> None:
    with write_spans([fact(PARENT, 1), fact(PARENT, 2)]):
        pass
    [one] = spans.get_finished_spans()
    assert one.parent is not None and f"{one.context.trace_id:032x}" == tracing.trace_id(PARENT)
    assert one.attributes["db.system"] == "postgresql" and one.attributes["stoker.audit.records"] == 2
    spans.clear()
    with write_spans([fact(PARENT, 1), fact(OTHER, 2), fact(None, 3)]):
        pass
    found = spans.get_finished_spans()
    batch = next(s for s in found if s.parent is None)
    per_trace = {f"{s.context.trace_id:032x}" for s in found if s.parent is not None}
    assert per_trace == {tracing.trace_id(PARENT), tracing.trace_id(OTHER)} and len(batch.links) == 2
    spans.clear()
    with write_spans([]):
        pass
    assert not spans.get_finished_spans()


def test_a_span_per_node_comfyui_executes(spans: InMemorySpanExporter) -> None:
    prompt = {"1": {"class_type": "KSampler"}, "2": {"class_type": "SaveImage"}}
    with tracing.span("generation", "attempt"):
        nodes = NodeSpans(prompt, "p1")
        nodes.on("execution_cached", {"nodes": ["0"]})
        nodes.on("executing", {"node": "1"})
        nodes.on("executing", {"node": "2"})
        nodes.on("executed", {"node": "2", "output": {}})
        nodes.on("executing", {"node": None})
        nodes.close()
    found = {s.name: s for s in spans.get_finished_spans()}
    attempt = found["attempt"]
    assert {"ComfyUI node KSampler", "ComfyUI node SaveImage"} <= set(found)
    assert found["ComfyUI node SaveImage"].attributes["comfy.node.output"] is True
    assert all(found[n].parent.span_id == attempt.context.span_id for n in found if n != "attempt")  # type: ignore[union-attr]
    assert [e.name for e in attempt.events] == ["ComfyUI cached nodes"]
