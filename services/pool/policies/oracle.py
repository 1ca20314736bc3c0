"""The oracle: what perfect foresight would cost (pure).

``zero_wait`` is the exact cheapest cost with every job starting on arrival, for instances that
take ``boot_s`` to boot and cost the same per hour: split the concurrency curve into levels; each
level pays its busy time, one boot, and for every gap either the idle time or a new boot,
whichever is less (levels are independent and their optima nest).

``lower_bound`` is a true lower bound on the cost of ANY schedule whose p-quantile wait is at most
``wait_s`` (so at most ``n - ceil(q n)`` jobs wait longer), when every boot takes at least
``boot_s``: every job's GPU time, one boot, and for each gap of the concurrency curve that no job
waiting at most ``wait_s`` can reach (``gap - wait_s``) the lesser of that and a boot; each job
allowed to wait longer may close at most one boot and its own length of those gaps.
"""

from __future__ import annotations

import math

from .trace import Job


def _levels(jobs: list[Job]) -> list[tuple[float, int]]:
    edges = sorted([(j.arrival, 1) for j in jobs] + [(j.arrival + j.gpu_s, -1) for j in jobs],
                   key=lambda e: (e[0], e[1]))
    return edges


def zero_wait(jobs: list[Job], boot_s: float, dph: float) -> float:
    """Exact cheapest $ with zero wait for every job."""
    if not jobs:
        return 0.0
    starts: dict[int, float] = {}
    last_end: dict[int, float] = {}
    seconds = 0.0
    level = 0
    for t, step in _levels(jobs):
        if step > 0:
            level += 1
            prev = last_end.get(level)
            seconds += boot_s if prev is None else min(t - prev, boot_s)
            starts[level] = t
        else:
            seconds += t - starts.pop(level)
            last_end[level] = t
            level -= 1
    return seconds * dph / 3600.0


def lower_bound(jobs: list[Job], boot_s: float, dph: float, wait_s: float = 0.0, q: float = 0.95) -> float:
    """A cost no schedule can beat if its ``q`` quantile wait is at most ``wait_s``."""
    if not jobs:
        return 0.0
    busy = sum(j.gpu_s for j in jobs)
    gaps = 0.0
    level, end = 0, None
    for t, step in _levels(jobs):
        if step > 0:
            if level == 0 and end is not None:
                gaps += min(max(t - end - wait_s, 0.0), boot_s)
            level += 1
        else:
            level -= 1
            if level == 0:
                end = t
    exceptions = len(jobs) - math.ceil(q * len(jobs))
    longest = sorted((j.gpu_s for j in jobs), reverse=True)[:exceptions]
    gaps = max(0.0, gaps - exceptions * boot_s - sum(longest))
    return (busy + boot_s + gaps) * dph / 3600.0
