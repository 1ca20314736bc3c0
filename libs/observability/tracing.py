"""Traces: one tracer provider per service name, W3C trace context in NATS headers and event envelopes.

The global OpenTelemetry provider can be set once per process, and tests run several services in
one process, so tracers come from ``tracer(service)``, which looks the provider up per call:
``setup_tracing`` registers the process's provider, ``use_exporter`` (tests) gives every service
name its own provider writing to one exporter, ``reset`` forgets them.

Without an exporter configured, spans are still recorded (cheaply, nothing is sent) so trace ids
travel through NATS headers, reach event envelopes and appear in log lines.
``OTEL_SDK_DISABLED=true`` turns all of it off.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import msgspec
from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SimpleSpanProcessor,
    SpanExporter,
)
from opentelemetry.trace import Link, Span, SpanKind, Tracer

from libs.events.envelope import Metadata

log = logging.getLogger("stoker.observability")

TRUE = frozenset({"1", "true", "yes", "on"})
TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"
Attributes = Mapping[str, Any]

_providers: dict[str, TracerProvider] = {}
_default: TracerProvider | None = None
_exporter: SpanExporter | None = None  # tests: every service gets a provider writing here
_disabled = False


def _resource(service: str) -> Resource:
    return Resource.create({"service.name": service})


def _otlp_exporter(env: Mapping[str, str]) -> SpanExporter | None:
    """The OTLP/HTTP exporter, or None (with a warning) when its package is missing."""
    protocol = env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or env.get("OTEL_EXPORTER_OTLP_PROTOCOL") or ""
    if protocol and protocol != "http/protobuf":
        log.warning("OTEL_EXPORTER_OTLP_PROTOCOL=%s is not supported; exporting with http/protobuf", protocol)
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
            OTLPSpanExporter,
        )
    except ImportError:
        log.warning("traces not exported: install opentelemetry-exporter-otlp-proto-http")
        return None
    endpoint = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or None
    if endpoint is None and env.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        endpoint = env["OTEL_EXPORTER_OTLP_ENDPOINT"].rstrip("/") + "/v1/traces"
    return OTLPSpanExporter(endpoint=endpoint)  # headers, timeout, TLS: from the OTEL_* variables


def exporter_from(env: Mapping[str, str]) -> SpanExporter | None:
    """The exporter the ``OTEL_*`` variables ask for: OTLP/HTTP, console, or none (the default)."""
    names = [n.strip() for n in (env.get("OTEL_TRACES_EXPORTER") or "").split(",") if n.strip()]
    if not names and (env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")):
        names = ["otlp"]
    if "otlp" in names:
        return _otlp_exporter(env)
    if "console" in names:
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter
        return ConsoleSpanExporter()
    return None


def setup_tracing(service_name: str, env: Mapping[str, str]) -> TracerProvider | None:
    """Make the process's tracer provider for ``service_name`` from ``OTEL_*`` settings; None if disabled."""
    global _default, _disabled
    if (env.get("OTEL_SDK_DISABLED") or "").strip().lower() in TRUE:
        _disabled = True
        return None
    provider = TracerProvider(resource=_resource(env.get("OTEL_SERVICE_NAME") or service_name))
    exporter = exporter_from(env)
    if exporter is not None:
        provider.add_span_processor(BatchSpanProcessor(exporter))
        log.info("exporting traces of %s with %s", service_name, type(exporter).__name__)
    # Not set as the global provider: that can be set once per process, and our tracers never read it.
    _providers[service_name] = _default = provider
    return provider


def shutdown_tracing() -> None:
    """Flush and stop every provider this module made (end of the process)."""
    for provider in {id(p): p for p in _providers.values()}.values():
        provider.shutdown()


def use_exporter(exporter: SpanExporter) -> None:
    """Tests: from now on each service name gets its own provider exporting synchronously to ``exporter``."""
    global _exporter, _disabled
    reset()
    _exporter, _disabled = exporter, False


def reset() -> None:
    """Forget every provider (tests); tracers fall back to the global provider."""
    global _default, _exporter, _disabled
    for provider in _providers.values():
        provider.shutdown()
    _providers.clear()
    _default, _exporter, _disabled = None, None, False


def provider_for(service: str) -> trace.TracerProvider:
    """The provider spans of ``service`` go to."""
    if _disabled:
        return trace.NoOpTracerProvider()
    found = _providers.get(service)
    if found is not None:
        return found
    if _exporter is not None:
        made = _providers[service] = TracerProvider(resource=_resource(service))
        made.add_span_processor(SimpleSpanProcessor(_exporter))
        return made
    return _default or trace.get_tracer_provider()


def tracer(service: str) -> Tracer:
    """The tracer of ``service`` (look it up per use: providers may be swapped by tests)."""
    return provider_for(service).get_tracer(f"stoker.{service}")


# --- context in carriers --------------------------------------------------------------------------

def inject(headers: dict[str, str] | None = None, context: Context | None = None) -> dict[str, str]:
    """``headers`` (a new dict if None) with the current (or given) trace context added."""
    carrier = {} if headers is None else headers
    propagate.inject(carrier, context=context)
    return carrier


def extract(headers: Mapping[str, str] | None) -> Context:
    """The trace context carried by NATS or HTTP headers (names in any case); an empty context if none."""
    return propagate.extract({k.lower(): v for k, v in (headers or {}).items()}, context=Context())


def from_traceparent(traceparent: str | None, tracestate: str | None = None) -> Context:
    """The context of an envelope's ``traceparent``/``tracestate`` (empty when absent or invalid)."""
    carrier = {TRACEPARENT: traceparent} if traceparent else {}
    if traceparent and tracestate:
        carrier[TRACESTATE] = tracestate
    return extract(carrier)


def has_parent(context: Context) -> bool:
    """True when ``context`` holds a valid span to continue."""
    return trace.get_current_span(context).get_span_context().is_valid


def current_traceparent() -> tuple[str | None, str | None]:
    """(traceparent, tracestate) of the current span, (None, None) outside one."""
    carrier = inject()
    return carrier.get(TRACEPARENT), carrier.get(TRACESTATE)


def with_trace(meta: Metadata) -> Metadata:
    """``meta`` carrying the current span's trace context, unless it already carries one."""
    if meta.traceparent:
        return meta
    traceparent, tracestate = current_traceparent()
    if traceparent is None:
        return meta
    return msgspec.structs.replace(meta, traceparent=traceparent, tracestate=tracestate)


def trace_id(traceparent: str | None) -> str | None:
    """The trace id of a W3C traceparent (``00-<trace id>-<span id>-<flags>``), or None."""
    parts = (traceparent or "").split("-")
    return parts[1] if len(parts) == 4 and len(parts[1]) == 32 else None


# --- spans ----------------------------------------------------------------------------------------

@contextlib.contextmanager
def span(service: str, name: str, *, kind: SpanKind = SpanKind.INTERNAL, attributes: Attributes | None = None,
         parent: Context | None = None, links: Sequence[Link] = ()) -> Iterator[Span]:
    """A span of ``service``, current inside the block: a child of ``parent`` (default: the current span)."""
    with tracer(service).start_as_current_span(name, context=parent, kind=kind, attributes=attributes,
                                               links=list(links)) as current:
        yield current


def root_span(service: str, name: str, *, kind: SpanKind = SpanKind.INTERNAL,
              attributes: Attributes | None = None) -> contextlib.AbstractContextManager[Span]:
    """A span that starts its own trace, whatever is current (reconcile passes, sweeps)."""
    return span(service, name, kind=kind, attributes=attributes, parent=Context())


def continued(service: str, name: str, *, headers: Mapping[str, str] | None = None,
              traceparent: str | None = None, tracestate: str | None = None, kind: SpanKind = SpanKind.CONSUMER,
              attributes: Attributes | None = None) -> contextlib.AbstractContextManager[Span]:
    """A span continuing the trace of a NATS message's headers, else of an envelope's traceparent, else a root."""
    parent = extract(headers)
    if not has_parent(parent):
        parent = from_traceparent(traceparent, tracestate)
    return span(service, name, kind=kind, attributes=attributes, parent=parent)


def link_to(traceparent: str | None, tracestate: str | None = None) -> Link | None:
    """A link to the span an envelope's traceparent names (None when it names none)."""
    context = trace.get_current_span(from_traceparent(traceparent, tracestate)).get_span_context()
    return Link(context) if context.is_valid else None
