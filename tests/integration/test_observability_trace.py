"""One generation request is one trace: gateway -> generation -> pool -> Vast.ai/ComfyUI calls -> audit write.

The real generation, pool and audit services run in-process against real NATS, PostgreSQL and the
simulator; spans go to an in-memory exporter, one tracer provider per service name. The test plays
the gateway: an HTTP-server span of service ``gateway`` whose context it puts in the headers of
the ``cmd.gen.submit`` request, as the gateway's middleware and NATS client do.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import msgspec
import pytest
import pytest_asyncio
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Span, SpanKind

from libs.events import codec
from libs.observability import metrics, tracing
from services.audit.app import AuditService
from services.audit.testing import fresh_database, test_config
from services.generation import api
from services.generation.testing import Stack, eventually, gen_stack
from services.pool import api as pool_api

pytestmark = pytest.mark.timeout(60)
JOB = {"template": "txt2img", "preset": "low", "params": {"prompt": "a traced fox", "steps": 4, "width": 64,
                                                          "height": 64}}


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """Every span of every service, kept in memory (one provider per service name)."""
    exporter = InMemorySpanExporter()
    tracing.use_exporter(exporter)
    yield exporter
    tracing.reset()


@pytest_asyncio.fixture(scope="module")
async def stack(nats_url: str, database_url: str) -> AsyncIterator[tuple[Stack, AuditService]]:
    """A pool with no instance yet (the job's claim makes it rent one), generation, and an audit service."""
    audit = AuditService(test_config(nats_url, await fresh_database(database_url)))
    await asyncio.wait_for(audit.start(), 20)
    try:
        async with asyncio.timeout(60), gen_stack(nats_url, instances=0, max_size=1) as st:
            yield st, audit
    finally:
        await asyncio.wait_for(audit.stop(), 20)


def service(span: ReadableSpan) -> str:
    """The service.name of a span's resource."""
    return str(span.resource.attributes.get("service.name"))


def tree_problems(found: list[ReadableSpan], root: Span) -> list[str]:
    """What keeps ``found`` from being one tree under ``root`` (empty when it is one)."""
    ids = {s.context.span_id for s in found}
    root_id = root.get_span_context().span_id
    problems = [f"{s.name} ({service(s)}) has no parent here" for s in found
                if s.context.span_id != root_id and (s.parent is None or s.parent.span_id not in ids)]
    if [s for s in found if s.context.span_id == root_id and s.parent is not None]:
        problems.append("the gateway span has a parent")
    return problems


async def submit_as_gateway(st: Stack, user: str) -> tuple[Span, dict[str, Any]]:
    """What the gateway does for ``POST /api/v1/generations``: a server span, the command with its context."""
    with tracing.span("gateway", "POST /api/v1/generations", kind=SpanKind.SERVER,
                      attributes={"http.request.method": "POST", "http.route": "/api/v1/generations"}) as root:
        body = codec.encode({"actor": f"user:{user}", "user_id": user, **JOB})
        msg = await st.nc.request(api.for_pool(api.SUBMIT, st.pool_id), body, timeout=10, headers=tracing.inject())
    reply = msgspec.json.decode(msg.data, type=api.Reply)
    assert reply.ok, reply.error
    return root, reply.result


async def test_one_generation_request_is_one_trace_across_gateway_generation_pool_and_audit(
        stack: tuple[Stack, AuditService], spans: InMemorySpanExporter, unique_id: str) -> None:
    st, _ = stack
    user = f"u{unique_id}"
    root, result = await submit_as_gateway(st, user)
    trace_id = root.get_span_context().trace_id
    job = await st.wait_status(user, result["job_id"], timeout=40)
    assert job["status"] == "completed", job["error"]

    def ours() -> list[ReadableSpan]:
        return [s for s in spans.get_finished_spans() if s.context.trace_id == trace_id]

    def complete() -> list[ReadableSpan] | None:
        found = ours()
        has_audit = any(service(s) == "audit" for s in found)
        return found if has_audit and not tree_problems(found, root) else None

    try:
        found: list[ReadableSpan] = await eventually(complete, 15)
    except TimeoutError:
        found = ours()
        raise AssertionError(f"not one tree: {tree_problems(found, root)}; "
                             f"spans: {sorted((service(s), s.name) for s in found)}") from None

    by_service: dict[str, list[ReadableSpan]] = {}
    for s in found:
        by_service.setdefault(service(s), []).append(s)
    assert set(by_service) == {"gateway", "generation", "pool", "audit"}, sorted(by_service)
    gen, pool, audit = by_service["generation"], by_service["pool"], by_service["audit"]
    names = {(service(s), s.name, s.kind) for s in found}
    # the gateway's request reached the generation service, which queued the job and ran it
    assert ("generation", api.SUBMIT, SpanKind.SERVER) in names
    assert ("generation", "jobs.gen process", SpanKind.CONSUMER) in names
    # the worker asked the pool for an instance; none was free, so the pool rented one (provider calls)
    assert ("generation", pool_api.CLAIM, SpanKind.CLIENT) in names
    assert ("pool", pool_api.CLAIM, SpanKind.SERVER) in names
    assert ("pool", pool_api.PREWARM, SpanKind.SERVER) in names
    provider = [s for s in pool if s.kind == SpanKind.CLIENT and "stoker.provider" in (s.attributes or {})]
    assert {"POST /api/v0/bundles/", "PUT /api/v0/asks/{id}/"} <= {s.name for s in provider}
    assert all(s.attributes.get("http.response.status_code") == 200 for s in provider)
    # the ComfyUI client: the prompt, the socket, one span per node ComfyUI executed, the output stored
    assert ("generation", "ComfyUI POST /prompt", SpanKind.CLIENT) in names
    assert ("generation", "ComfyUI GET /ws", SpanKind.CLIENT) in names
    executed = {s.attributes.get("comfy.node.class_type") for s in gen if s.name.startswith("ComfyUI node ")}
    assert {"KSampler", "SaveImage"} <= executed, executed
    assert any(s.name == "object_store put" for s in gen)
    # the audit service wrote the job's events to PostgreSQL within the same trace
    assert all(s.attributes.get("db.system") == "postgresql" and s.kind == SpanKind.CLIENT for s in audit)
    assert sum(int(s.attributes.get("stoker.audit.records", 0)) for s in audit) >= 4
    # spans carry no secret: not the provider key, not an Authorization header
    text = repr([dict(s.attributes or {}) for s in spans.get_finished_spans()])
    assert "sim-key" not in text and "Bearer" not in text

    # incident review: every event the request caused carries its trace id
    records = await st.events(result["job_id"])
    assert records and all(tracing.trace_id(r.envelope.traceparent) == format(trace_id, "032x") for r in records)
    # reconcile passes are traces of their own
    passes = [s for s in spans.get_finished_spans() if s.name == "pool.reconcile"]
    assert passes and all(s.parent is None and s.context.trace_id != trace_id for s in passes)


async def scrape(registry: metrics.Registry) -> str:
    """GET /metrics from a listener on a free port, the way Prometheus would."""
    runner = await metrics.serve(registry, 0, "127.0.0.1")
    try:
        port = runner.addresses[0][1]
        async with aiohttp.ClientSession() as session, session.get(f"http://127.0.0.1:{port}/metrics") as resp:
            assert resp.status == 200 and resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
            return await resp.text()
    finally:
        await runner.cleanup()


def sample(text: str, series: str) -> float:
    """The value of one series (name with labels, exactly as exposed)."""
    for line in text.splitlines():
        if line.startswith(series + " "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{series} not exposed:\n{text}")


async def test_each_service_exposes_its_metrics(stack: tuple[Stack, AuditService], unique_id: str) -> None:
    st, audit = stack
    assert st.gen is not None
    user = f"m{unique_id}"
    result = await st.ok(api.SUBMIT, {"actor": f"user:{user}", "user_id": user, **JOB})
    assert (await st.wait_status(user, result["job_id"], timeout=30))["status"] == "completed"
    await audit.wait_caught_up(15)

    pool = await scrape(st.pool.metrics.registry)
    assert sample(pool, 'stoker_pool_rentals_total{outcome="rented"}') >= 1
    assert sample(pool, 'stoker_pool_claim_seconds_count{outcome="ok"}') >= 1
    assert sum(sample(pool, f'stoker_pool_instances{{state="{s}"}}') for s in ("ready", "claimed")) >= 1
    assert sample(pool, "stoker_pool_spend_rate_dollars_per_hour") > 0
    assert "# TYPE stoker_pool_claim_seconds histogram" in pool

    gen = await scrape(st.gen.metrics.registry)
    assert sample(gen, 'stoker_gen_jobs_finished_total{status="completed"}') >= 1
    assert sample(gen, 'stoker_gen_job_duration_seconds_count{status="completed"}') >= 1
    assert sample(gen, "stoker_gen_queue_wait_seconds_count") >= 1
    assert sample(gen, "stoker_gen_queue_depth") == 0

    recorded = await scrape(audit.metrics.registry)
    assert sample(recorded, "stoker_audit_records_written_total") >= 4
    assert sample(recorded, 'stoker_audit_lag_messages{stream="EVENTS_GEN"}') == 0
    assert sample(recorded, "stoker_audit_commit_seconds_count") >= 1


async def test_a_request_through_the_real_gateway_is_one_trace(
        stack: tuple[Stack, AuditService], spans: InMemorySpanExporter, nats_url: str, database_url: str,
        unique_id: str) -> None:
    """The same, with the real gateway: its middleware starts the trace, its NATS client carries it."""
    from services.gateway.testing import bearer, gateway_client, gateway_env, user_token

    st, _ = stack
    async with gateway_client(gateway_env(nats_url, database_url, STOKER_POOL_ID=st.pool_id)) as client:
        user_id, token = await user_token(client, f"trace{unique_id}")
        resp = await client.post("/api/v1/generations", headers=bearer(token), json={
            "template": "txt2img", "preset": "low", "prompt": "a traced fox", "steps": 4, "width": 64,
            "height": 64})
        assert resp.status in (200, 201), await resp.text()
        job_id = (await resp.json())["id"]
        job = await st.wait_status(user_id, job_id, timeout=40)
        assert job["status"] == "completed", job["error"]
    [root] = [s for s in spans.get_finished_spans() if service(s) == "gateway" and s.kind == SpanKind.SERVER
              and (s.attributes or {}).get("http.route") == "/api/v1/generations"
              and (s.attributes or {}).get("http.request.method") == "POST"]
    trace_id = root.context.trace_id

    def complete() -> set[str] | None:
        found = {service(s) for s in spans.get_finished_spans() if s.context.trace_id == trace_id}
        return found if found >= {"gateway", "generation", "pool", "audit"} else None

    try:
        await eventually(complete, 15)
    except TimeoutError:
        found = sorted((service(s), s.name) for s in spans.get_finished_spans() if s.context.trace_id == trace_id)
        raise AssertionError(f"the gateway's trace does not reach every service: {found}") from None
    records = await st.events(job_id)
    assert records and all(tracing.trace_id(r.envelope.traceparent) == format(trace_id, "032x") for r in records)
