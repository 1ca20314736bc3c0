"""Spans of audit writes: each batch COPY is a PostgreSQL client span, placed in its events' traces.

A batch whose events all belong to one trace continues that trace. A batch mixing traces gets
its own trace, linked to theirs, and each of those traces gets a span of the same write (linked
back to the batch), so every request's trace shows when its events reached the audit log.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Link, Span, SpanKind, StatusCode

from libs.observability import tracing
from services.audit.domain import Fact

SERVICE = "audit"
NAME = "audit write"
MAX_TRACES = 64  # per-trace spans (and links) of one batch; beyond that only the count is kept
DB_ATTRIBUTES = {"db.system": "postgresql", "db.system.name": "postgresql", "db.operation.name": "COPY",
                 "db.collection.name": "audit.records"}


def traces_of(facts: Sequence[Fact]) -> tuple[dict[str, tuple[Context, int]], int]:
    """The distinct traces of ``facts`` (trace id -> (context, record count)), and how many facts had none."""
    found: dict[str, tuple[Context, int]] = {}
    untraced = 0
    for f in facts:
        key = tracing.trace_id(f.traceparent)  # a string split: this runs per record of every batch
        if key is None:
            untraced += 1
            continue
        known = found.get(key)
        if known is not None:
            found[key] = (known[0], known[1] + 1)
            continue
        context = tracing.from_traceparent(f.traceparent, f.tracestate)  # parsed once per trace
        if not tracing.has_parent(context):
            untraced += 1
            continue
        found[key] = (context, 1)
    return found, untraced


@contextlib.contextmanager
def write_spans(facts: Sequence[Fact]) -> Iterator[Span]:
    """Spans covering one batch write of ``facts`` (the block), ended with its outcome."""
    if not facts:  # nothing new to record: no span
        yield trace.INVALID_SPAN
        return
    traces, untraced = traces_of(facts)
    attributes = {**DB_ATTRIBUTES, "stoker.audit.records": len(facts), "stoker.audit.traces": len(traces)}
    if len(traces) == 1 and not untraced:
        parent = next(iter(traces.values()))[0]
        with tracing.span(SERVICE, NAME, kind=SpanKind.CLIENT, attributes=attributes, parent=parent) as batch:
            yield batch
        return
    chosen = list(traces.values())[:MAX_TRACES]
    links = [Link(trace.get_current_span(c).get_span_context()) for c, _ in chosen]
    with tracing.span(SERVICE, NAME, kind=SpanKind.CLIENT, attributes=attributes, parent=Context(),
                      links=links) as batch:
        back = [Link(batch.get_span_context())]
        tracer = tracing.tracer(SERVICE)
        each = [tracer.start_span(NAME, context=c, kind=SpanKind.CLIENT, links=back,
                                  attributes={**DB_ATTRIBUTES, "stoker.audit.records": n, "stoker.audit.batch": len(facts)})
                for c, n in chosen]
        try:
            yield batch
        except BaseException as exc:
            for span in each:
                span.set_status(StatusCode.ERROR, type(exc).__name__)
            raise
        finally:
            for span in each:
                span.end()
