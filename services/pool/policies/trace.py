"""Demand traces for ``stoker simulate``: a CSV file, or the pool's and generation's history.

CSV format (a header row is optional; ``#`` lines are comments)::

    arrival_time,gpu_seconds[,checkpoint]

``arrival_time`` is an ISO 8601 time (``2026-11-02T09:15:00Z``; no zone means UTC) or seconds
(a number, from an arbitrary start: such traces are placed on a Monday 00:00 UTC);
``gpu_seconds`` is the job's GPU time, > 0; ``checkpoint`` is optional and informative. Rows may
come in any order. A bad row is an error naming its line.
"""

from __future__ import annotations

import csv
import io
import math
from datetime import datetime, timezone

import msgspec

NUMERIC_BASE = datetime(2026, 1, 5, tzinfo=timezone.utc).timestamp()  # a Monday
MAX_GPU_S = 7 * 24 * 3600.0
MAX_SECONDS = 4e9  # numeric arrival times (epoch seconds pass too)
MAX_SPAN_DAYS = 400.0


class Job(msgspec.Struct, frozen=True):
    """One job of a trace: when it arrived (epoch seconds) and how much GPU time it needs."""

    arrival: float
    gpu_s: float
    checkpoint: str = ""


class TraceError(ValueError):
    """A trace that cannot be used; the message names the line and what is wrong."""


def parse_csv(text: str, *, source: str = "trace") -> list[Job]:
    """Jobs from CSV text in the documented format, sorted by arrival."""
    jobs: list[Job] = []
    numeric: bool | None = None
    for lineno, row in enumerate(csv.reader(io.StringIO(text)), start=1):
        if not row or not "".join(row).strip() or row[0].lstrip().startswith("#"):
            continue
        cells = [c.strip() for c in row]
        if lineno == 1 and cells[0].lower() in ("arrival_time", "arrival", "time"):
            continue
        if len(cells) not in (2, 3):
            raise TraceError(f"{source} line {lineno}: expected arrival_time,gpu_seconds[,checkpoint], "
                             f"got {len(cells)} field(s)")
        arrival, is_number = _arrival(cells[0], source, lineno)
        if numeric is None:
            numeric = is_number
        elif numeric != is_number:
            raise TraceError(f"{source} line {lineno}: mixes ISO times and seconds in arrival_time")
        try:
            gpu_s = float(cells[1])
        except ValueError:
            raise TraceError(f"{source} line {lineno}: gpu_seconds {cells[1]!r} is not a number") from None
        if not math.isfinite(gpu_s) or not 0 < gpu_s <= MAX_GPU_S:
            raise TraceError(f"{source} line {lineno}: gpu_seconds must be > 0 and at most {MAX_GPU_S:.0f}")
        jobs.append(Job(arrival=arrival, gpu_s=gpu_s, checkpoint=cells[2] if len(cells) == 3 else ""))
    if not jobs:
        raise TraceError(f"{source}: no jobs (expected rows of arrival_time,gpu_seconds[,checkpoint])")
    jobs.sort(key=lambda j: j.arrival)
    span = (jobs[-1].arrival - jobs[0].arrival) / 86400.0
    if span > MAX_SPAN_DAYS:
        raise TraceError(f"{source}: the trace spans {span:.0f} days; at most {MAX_SPAN_DAYS:.0f} can be simulated")
    if numeric:
        jobs = [Job(arrival=NUMERIC_BASE + j.arrival, gpu_s=j.gpu_s, checkpoint=j.checkpoint) for j in jobs]
    return jobs


def _arrival(cell: str, source: str, lineno: int) -> tuple[float, bool]:
    try:
        value = float(cell)
    except ValueError:
        pass
    else:
        if not math.isfinite(value) or not 0 <= value <= MAX_SECONDS:
            raise TraceError(f"{source} line {lineno}: arrival_time in seconds must be between 0 and {MAX_SECONDS:.0f}")
        return value, True
    try:
        when = datetime.fromisoformat(cell.replace("Z", "+00:00"))
    except ValueError:
        raise TraceError(f"{source} line {lineno}: arrival_time {cell[:40]!r} is neither ISO 8601 nor seconds") \
            from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    if not 1970 <= when.astimezone(timezone.utc).year <= 9000:
        raise TraceError(f"{source} line {lineno}: arrival_time {cell[:40]!r} is out of range (years 1970-9000)")
    return when.timestamp(), False


def to_csv(jobs: list[Job]) -> str:
    """The documented CSV form of ``jobs`` (ISO times, UTC)."""
    out = ["arrival_time,gpu_seconds,checkpoint"]
    for j in jobs:
        when = datetime.fromtimestamp(j.arrival, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        out.append(f"{when},{j.gpu_s:.1f},{j.checkpoint}")
    return "\n".join(out) + "\n"
