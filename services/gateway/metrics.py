"""Prometheus text exposition, by hand: request counts and latency per route and status, pool gauges."""

from __future__ import annotations

import bisect
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable

from aiohttp import web
from aiohttp.typedefs import Middleware

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
UNMATCHED = "unmatched"


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _num(value: float) -> str:
    return repr(float(value)) if value != int(value) else str(int(value))


class Metrics:
    """Request counters and latency histograms; gauges are computed when scraped."""

    def __init__(self) -> None:
        self.requests: Counter[tuple[str, str, str]] = Counter()  # (method, route, status) -> count
        self._hist: dict[tuple[str, str], list[float]] = {}  # (method, route) -> bucket counts, overflow, sum, count

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        """Count one finished request."""
        self.requests[(method, route, str(status))] += 1
        cells = self._hist.get((method, route))
        if cells is None:
            cells = self._hist[(method, route)] = [0.0] * (len(BUCKETS) + 3)
        cells[bisect.bisect_left(BUCKETS, seconds)] += 1  # index len(BUCKETS) is +Inf only
        cells[-2] += seconds
        cells[-1] += 1

    def render(self, gauges: Iterable[tuple[str, str, str, dict[str, str], float]] = ()) -> str:
        """The exposition text: counters, histograms, then ``gauges`` as (name, type, help, labels, value)."""
        out = ["# HELP stoker_http_requests_total HTTP requests by method, route and status.",
               "# TYPE stoker_http_requests_total counter"]
        for (method, route, status), n in sorted(self.requests.items()):
            out.append(f'stoker_http_requests_total{{method="{method}",route="{_label(route)}",status="{status}"}} {n}')
        out += ["# HELP stoker_http_request_duration_seconds HTTP request latency by method and route.",
                "# TYPE stoker_http_request_duration_seconds histogram"]
        for (method, route), cells in sorted(self._hist.items()):
            labels = f'method="{method}",route="{_label(route)}"'
            running = 0.0
            for bound, count in zip(BUCKETS, cells):
                running += count
                out.append(f'stoker_http_request_duration_seconds_bucket{{{labels},le="{bound}"}} {_num(running)}')
            out.append(f'stoker_http_request_duration_seconds_bucket{{{labels},le="+Inf"}} {_num(cells[-1])}')
            out.append(f"stoker_http_request_duration_seconds_sum{{{labels}}} {cells[-2]!r}")
            out.append(f"stoker_http_request_duration_seconds_count{{{labels}}} {_num(cells[-1])}")
        seen: set[str] = set()
        for name, kind, help_, gauge_labels, value in gauges:
            if name not in seen:
                out += [f"# HELP {name} {help_}", f"# TYPE {name} {kind}"]
                seen.add(name)
            rendered = ",".join(f'{k}="{_label(v)}"' for k, v in sorted(gauge_labels.items()))
            out.append(f"{name}{{{rendered}}} {_num(value)}" if rendered else f"{name} {_num(value)}")
        return "\n".join(out) + "\n"


def route_of(request: web.Request) -> str:
    """The route template (``/api/v1/pool/instances/{id}/terminate``), never the raw path (bounded labels)."""
    info = request.match_info
    route = getattr(info, "route", None)
    resource = getattr(route, "resource", None)
    if resource is None or getattr(info, "http_exception", None) is not None:
        return UNMATCHED
    return str(resource.canonical)


def metrics_middleware(metrics: Metrics) -> Middleware:
    """Time every request and count it by route and final status."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        started = time.perf_counter()
        status = 500
        try:
            response = await handler(request)
            status = response.status
            return response
        finally:
            metrics.observe(request.method, route_of(request), status, time.perf_counter() - started)

    return middleware
