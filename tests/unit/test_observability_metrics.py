"""The hand-written Prometheus registry: instruments, labels, scrape-time callbacks, the text format."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest

from libs.events import pool as ev
from libs.observability.metrics import Registry, port_from
from services.pool.instance import Instance
from services.pool.metrics import PoolMetrics
from services.pool.view import PoolView

# One sample line of the text format: name, optional {labels}, value.
SAMPLE = re.compile(r'^[a-zA-Z_:][a-zA-Z0-9_:]*(\{([a-zA-Z_][a-zA-Z0-9_]*="([^"\\]|\\.)*",?)*\})? '
                    r'(-?[0-9.e+-]+|NaN|[+-]Inf)$')


def well_formed(text: str) -> None:
    """Every line is a HELP/TYPE comment or a sample; the text ends with a newline."""
    assert text.endswith("\n")
    for line in text.rstrip("\n").splitlines():
        assert line.startswith(("# HELP ", "# TYPE ")) or SAMPLE.match(line), line


async def test_counters_gauges_and_histograms_render_in_the_text_format() -> None:
    r = Registry()
    jobs = r.counter("stoker_jobs_total", "Jobs by status.", ["status"])
    depth = r.gauge("stoker_depth", "Queue depth.")
    wait = r.histogram("stoker_wait_seconds", "Wait.", ["kind"], buckets=(0.1, 1.0))
    jobs.inc(status="completed")
    jobs.inc(2, status='odd "quoted"\nvalue')
    depth.set(3)
    depth.inc(-1)
    for seconds in (0.05, 0.5, 5.0):
        wait.observe(seconds, kind="a")
    text = await r.render()
    well_formed(text)
    assert 'stoker_jobs_total{status="completed"} 1\n' in text
    assert 'stoker_jobs_total{status="odd \\"quoted\\"\\nvalue"} 2\n' in text
    assert "# TYPE stoker_depth gauge\nstoker_depth 2\n" in text
    assert ('stoker_wait_seconds_bucket{kind="a",le="0.1"} 1\nstoker_wait_seconds_bucket{kind="a",le="1"} 2\n'
            'stoker_wait_seconds_bucket{kind="a",le="+Inf"} 3\nstoker_wait_seconds_sum{kind="a"} 5.55\n'
            'stoker_wait_seconds_count{kind="a"} 3\n') in text
    with pytest.raises(ValueError):
        jobs.inc(reason="wrong label")
    with pytest.raises(ValueError):
        jobs.inc(-1, status="completed")
    with pytest.raises(ValueError):
        r.counter("stoker_jobs_total", "again")


async def test_callbacks_are_computed_at_scrape_time_and_a_failing_one_hides_nothing_else() -> None:
    r = Registry()
    state = {"n": 1.0}

    async def lag() -> list[tuple[dict[str, str], float]]:
        return [({"stream": "EVENTS_GEN"}, state["n"])]

    def broken() -> list[tuple[dict[str, str], float]]:
        raise RuntimeError("NATS is away")

    r.callback("stoker_lag", "gauge", "Lag.", lag)
    r.callback("stoker_broken", "gauge", "Broken.", broken)
    assert 'stoker_lag{stream="EVENTS_GEN"} 1\n' in await r.render()
    state["n"] = 7
    text = await r.render()
    well_formed(text)
    assert 'stoker_lag{stream="EVENTS_GEN"} 7\n' in text and "# TYPE stoker_broken gauge" in text


async def test_pool_metrics_count_failures_from_events_and_read_instances_from_the_view() -> None:
    m = PoolMetrics()
    now = datetime.now(UTC)
    view = PoolView(pool_id="p", instances={
        "a": Instance(id="a", pool_id="p", phase="ready", dph=0.4, rented_at=now, phase_since=now),
        "b": Instance(id="b", pool_id="p", phase="claimed", dph=0.6, rented_at=now, phase_since=now)})
    m.watch(lambda: view, lambda: now)
    m.observe_events([ev.RentFailed(pool_id="p", message="no"), ev.Terminated(pool_id="p", reason="provider_lost"),
                      ev.Terminated(pool_id="p", reason="idle"), ev.Ready(pool_id="p", base_url="http://h")])
    text = await m.registry.render()
    well_formed(text)
    for line in ('stoker_pool_instances{state="ready"} 1', 'stoker_pool_instances{state="claimed"} 1',
                 'stoker_pool_instances{state="failed"} 0', "stoker_pool_spend_rate_dollars_per_hour 1",
                 'stoker_pool_failures_total{reason="provider_lost"} 1',
                 'stoker_pool_failures_total{reason="rent_failed"} 1', 'stoker_pool_terminations_total{reason="idle"} 1'):
        assert line + "\n" in text, line


def test_the_port_is_off_unless_set() -> None:
    assert port_from({}) is None and port_from({"STOKER_METRICS_PORT": "0"}) is None
    assert port_from({"STOKER_METRICS_PORT": "9101"}) == 9101
    with pytest.raises(ValueError):
        port_from({"STOKER_METRICS_PORT": "70000"})
