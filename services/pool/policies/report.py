"""The comparison ``stoker simulate`` prints: one row per policy, plus the oracle (pure)."""

from __future__ import annotations

from typing import Any

import msgspec

from libs.events import pool as ev

from . import oracle
from .model import BootModel
from .simulate import Result, simulate
from .trace import Job


class Row(msgspec.Struct, kw_only=True):
    """One policy's figures next to the oracle's at the same p95."""

    policy: str
    spec: ev.PolicySpec
    total: float
    booting: float
    idle: float
    busy: float
    jobs: int
    cold_waits: int
    p50: float
    p95: float
    p99: float
    max_instances: int
    rentals: int
    oracle_at_p95: float


class Comparison(msgspec.Struct, kw_only=True):
    """Every policy on one trace, and the oracle."""

    jobs: int
    days: float
    model: str
    oracle_zero_wait: float
    rows: list[Row]
    results: dict[str, Result] = {}


def compare(jobs: list[Job], specs: list[ev.PolicySpec], model: BootModel, *, max_size: int = 8,
            min_size: int = 0) -> Comparison:
    """Simulate every policy in ``specs`` on ``jobs``."""
    rows, results = [], {}
    for spec in specs:
        r = simulate(jobs, spec, model, max_size=max_size, min_size=min_size)
        results[r.policy] = r
        rows.append(Row(policy=r.policy, spec=spec, total=r.total, booting=r.by_state["booting"],
                        idle=r.by_state["idle"], busy=r.by_state["busy"], jobs=r.jobs, cold_waits=r.cold_waits,
                        p50=r.p50, p95=r.p95, p99=r.p99, max_instances=r.max_instances, rentals=r.rentals,
                        oracle_at_p95=oracle.lower_bound(jobs, model.boot_min_s, model.dph, r.p95)))
    days = (jobs[-1].arrival - jobs[0].arrival) / 86400.0
    return Comparison(jobs=len(jobs), days=days, model=model.describe(),
                      oracle_zero_wait=oracle.zero_wait(jobs, model.boot_min_s, model.dph), rows=rows,
                      results=results)


def choose(comparison: Comparison, p95_s: float) -> Row | None:
    """The target knob: the cheapest policy whose p95 wait is at most ``p95_s`` (None if none is)."""
    meeting = [r for r in comparison.rows if r.p95 <= p95_s]
    return min(meeting, key=lambda r: r.total) if meeting else None


def table(c: Comparison) -> str:
    """A plain-text table."""
    head = (f"{'policy':44} {'total $':>9} {'boot $':>8} {'idle $':>8} {'busy $':>8} {'jobs':>6} {'cold':>5} "
            f"{'p50 s':>7} {'p95 s':>7} {'p99 s':>7} {'max':>4} {'oracle@p95 $':>12}")
    lines = [f"{c.jobs} jobs over {c.days:.1f} days; {c.model}", head, "-" * len(head)]
    for r in c.rows:
        lines.append(f"{r.policy[:44]:44} {r.total:9.2f} {r.booting:8.2f} {r.idle:8.2f} {r.busy:8.2f} {r.jobs:6d} "
                     f"{r.cold_waits:5d} {r.p50:7.0f} {r.p95:7.0f} {r.p99:7.0f} {r.max_instances:4d} "
                     f"{r.oracle_at_p95:12.2f}")
    lines.append(f"{'oracle (perfect foresight, zero wait)':44} {c.oracle_zero_wait:9.2f}")
    lines.append("oracle@p95: a lower bound on any schedule's cost at that policy's p95 wait (boots at the "
                 "model's minimum, no failures)")
    return "\n".join(lines)


def to_json(c: Comparison) -> dict[str, Any]:
    """A JSON-ready comparison (with each policy's timeline and decisions, without per-job waits)."""
    out: dict[str, Any] = msgspec.to_builtins(msgspec.structs.replace(c, results={}))
    out["results"] = {name: {"timeline": r.timeline, "decisions": r.decisions[-50:], "rents": len(r.rents)}
                      for name, r in c.results.items()}
    return out
