"""Metrics: counters, gauges and histograms with labels, Prometheus text exposition, an aiohttp ``/metrics``.

Hand-written (no client library): a ``Registry`` per service holds instruments updated where things
happen, and callbacks computed at scrape time from a read model (instances by state, queue depth).
``serve_from_env`` listens on ``STOKER_METRICS_PORT`` (unset or 0: no listener).
"""

from __future__ import annotations

import bisect
import contextlib
import inspect
import logging
import math
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence

from aiohttp import web

log = logging.getLogger("stoker.observability")
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
LONG_SECONDS = (0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)
Sample = tuple[Mapping[str, str], float]
Collect = Callable[[], Iterable[Sample] | Awaitable[Iterable[Sample]]]


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _num(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if value in (float("inf"), float("-inf")):
        return "+Inf" if value > 0 else "-Inf"
    return str(int(value)) if value == int(value) and abs(value) < 1e15 else repr(float(value))


def _labels(pairs: Iterable[tuple[str, str]]) -> str:
    inner = ",".join(f'{k}="{_label(v)}"' for k, v in pairs)
    return f"{{{inner}}}" if inner else ""


class Metric:
    """A named family of samples, one per combination of label values."""

    kind = "untyped"

    def __init__(self, name: str, help_: str, labelnames: Sequence[str] = ()) -> None:
        self.name, self.help, self.labelnames = name, help_, tuple(labelnames)

    def _key(self, labels: Mapping[str, str]) -> tuple[str, ...]:
        if set(labels) != set(self.labelnames):
            raise ValueError(f"{self.name} takes labels {self.labelnames}, not {tuple(labels)}")
        return tuple(str(labels[n]) for n in self.labelnames)

    def header(self) -> list[str]:
        """The HELP and TYPE lines."""
        return [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} {self.kind}"]

    def lines(self) -> list[str]:
        """The sample lines."""
        raise NotImplementedError


class Counter(Metric):
    """A value that only goes up (per label values)."""

    kind = "counter"

    def __init__(self, name: str, help_: str, labelnames: Sequence[str] = ()) -> None:
        super().__init__(name, help_, labelnames)
        self.values: dict[tuple[str, ...], float] = {}

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        """Add ``amount`` (never negative)."""
        if amount < 0:
            raise ValueError("a counter cannot go down")
        key = self._key(labels)
        self.values[key] = self.values.get(key, 0.0) + amount

    def value(self, **labels: str) -> float:
        """The current value (0 when never counted)."""
        return self.values.get(self._key(labels), 0.0)

    def lines(self) -> list[str]:
        """One line per label combination."""
        return [f"{self.name}{_labels(zip(self.labelnames, k))} {_num(v)}" for k, v in sorted(self.values.items())]


class Gauge(Counter):
    """A value that goes up and down."""

    kind = "gauge"

    def set(self, value: float, **labels: str) -> None:
        """Set the value."""
        self.values[self._key(labels)] = value

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        """Add ``amount`` (may be negative)."""
        key = self._key(labels)
        self.values[key] = self.values.get(key, 0.0) + amount


class Histogram(Metric):
    """Observations counted into cumulative buckets, with their sum and count."""

    kind = "histogram"

    def __init__(self, name: str, help_: str, labelnames: Sequence[str] = (), buckets: Sequence[float] = SECONDS) -> None:
        super().__init__(name, help_, labelnames)
        self.buckets = tuple(sorted(buckets))
        self.cells: dict[tuple[str, ...], list[float]] = {}  # per bucket (non-cumulative), +Inf, sum, count

    def observe(self, value: float, **labels: str) -> None:
        """Count one observation."""
        key = self._key(labels)
        cells = self.cells.get(key)
        if cells is None:
            cells = self.cells[key] = [0.0] * (len(self.buckets) + 3)
        cells[bisect.bisect_left(self.buckets, value)] += 1
        cells[-2] += value
        cells[-1] += 1

    @contextlib.contextmanager
    def time(self, **labels: str) -> Iterator[None]:
        """Observe the seconds the block takes."""
        started = time.perf_counter()
        try:
            yield
        finally:
            self.observe(time.perf_counter() - started, **labels)

    def count(self, **labels: str) -> float:
        """How many observations were made."""
        cells = self.cells.get(self._key(labels))
        return cells[-1] if cells else 0.0

    def lines(self) -> list[str]:
        """Buckets (cumulative, then +Inf), sum and count per label combination."""
        out: list[str] = []
        for key, cells in sorted(self.cells.items()):
            pairs = list(zip(self.labelnames, key))
            running = 0.0
            for bound, n in zip(self.buckets, cells):
                running += n
                out.append(f"{self.name}_bucket{_labels([*pairs, ('le', _num(bound))])} {_num(running)}")
            out.append(f"{self.name}_bucket{_labels([*pairs, ('le', '+Inf')])} {_num(cells[-1])}")
            out.append(f"{self.name}_sum{_labels(pairs)} {_num(cells[-2])}")
            out.append(f"{self.name}_count{_labels(pairs)} {_num(cells[-1])}")
        return out


class Callback(Metric):
    """Samples computed when scraped (from a read model, or an async look-up)."""

    def __init__(self, name: str, kind: str, help_: str, collect: Collect) -> None:
        super().__init__(name, help_)
        self.kind, self._collect = kind, collect
        self._last: list[Sample] = []

    async def refresh(self) -> None:
        """Compute the samples now (none when that fails: one broken gauge must not hide the others)."""
        try:
            found = self._collect()
            if inspect.isawaitable(found):
                found = await found
            self._last = list(found)
        except Exception as exc:  # noqa: BLE001 - whatever the read model or NATS raised
            log.warning("metric %s could not be computed: %r", self.name, exc)
            self._last = []

    def lines(self) -> list[str]:
        """The samples of the last refresh."""
        return [f"{self.name}{_labels(sorted(labels.items()))} {_num(v)}" for labels, v in self._last]


class Registry:
    """A service's metrics, rendered in the Prometheus text format."""

    def __init__(self) -> None:
        self.metrics: dict[str, Metric] = {}

    def _add(self, metric: Metric) -> Metric:
        if metric.name in self.metrics:
            raise ValueError(f"metric {metric.name} is already registered")
        self.metrics[metric.name] = metric
        return metric

    def counter(self, name: str, help_: str, labelnames: Sequence[str] = ()) -> Counter:
        """Register a counter."""
        made = Counter(name, help_, labelnames)
        self._add(made)
        return made

    def gauge(self, name: str, help_: str, labelnames: Sequence[str] = ()) -> Gauge:
        """Register a gauge."""
        made = Gauge(name, help_, labelnames)
        self._add(made)
        return made

    def histogram(self, name: str, help_: str, labelnames: Sequence[str] = (),
                  buckets: Sequence[float] = SECONDS) -> Histogram:
        """Register a histogram."""
        made = Histogram(name, help_, labelnames, buckets)
        self._add(made)
        return made

    def callback(self, name: str, kind: str, help_: str, collect: Collect) -> None:
        """Register samples computed at scrape time by ``collect`` (sync or async)."""
        self._add(Callback(name, kind, help_, collect))

    async def render(self) -> str:
        """The exposition text of every metric."""
        out: list[str] = []
        for metric in self.metrics.values():
            if isinstance(metric, Callback):
                await metric.refresh()
            out += metric.header() + metric.lines()
        return "\n".join(out) + "\n"


def metrics_app(registry: Registry) -> web.Application:
    """An application answering ``GET /metrics``."""
    async def handle(request: web.Request) -> web.Response:
        return web.Response(body=(await registry.render()).encode(), headers={"Content-Type": CONTENT_TYPE})

    app = web.Application()
    app.router.add_get("/metrics", handle)
    return app


def port_from(env: Mapping[str, str]) -> int | None:
    """``STOKER_METRICS_PORT`` (None when unset or 0: no listener)."""
    raw = (env.get("STOKER_METRICS_PORT") or "").strip()
    if not raw or raw == "0":
        return None
    port = int(raw)
    if not 0 < port < 65536:
        raise ValueError(f"STOKER_METRICS_PORT must be a TCP port, not {raw}")
    return port


async def serve(registry: Registry, port: int, host: str = "0.0.0.0") -> web.AppRunner:
    """Serve ``/metrics`` on ``host:port`` until the returned runner is cleaned up."""
    runner = web.AppRunner(metrics_app(registry), access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except BaseException:
        await runner.cleanup()
        raise
    return runner


async def serve_from_env(registry: Registry, env: Mapping[str, str]) -> web.AppRunner | None:
    """Serve ``/metrics`` on ``STOKER_METRICS_HOST`` (0.0.0.0):``STOKER_METRICS_PORT``, if a port is set.

    A port that cannot be bound is logged, not fatal: the service's work matters more than its metrics.
    """
    port = port_from(env)
    if port is None:
        return None
    host = env.get("STOKER_METRICS_HOST") or "0.0.0.0"
    try:
        runner = await serve(registry, port, host)
    except OSError as exc:
        log.error("no /metrics: cannot listen on %s:%d (%s)", host, port, exc)
        return None
    log.info("metrics on http://%s:%d/metrics", host, port)
    return runner
