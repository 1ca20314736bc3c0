"""The pool's metrics: instances by state, rentals and failures by reason, spend, claim latency.

Counters count what this replica decided (its own appends), so summing over replicas is right;
gauges are read from the replica's view when scraped.
"""

from __future__ import annotations

import typing
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime

from libs.events import pool as ev
from libs.events.base import Event
from libs.observability.metrics import LONG_SECONDS, Registry, Sample

from . import view as v
from .instance import Phase

PHASES: tuple[str, ...] = typing.get_args(Phase)


def failure_reason(event: Event) -> str | None:
    """Why an event says an instance failed (None when it says nothing of the kind)."""
    match event:
        case ev.RentFailed():
            return "rent_failed"
        case ev.ExtractionFailed(kind=kind):
            return str(kind)
        case ev.ProbeFailed():
            return "probe_timeout"
        case ev.Terminated(reason="provider_lost"):
            return "provider_lost"
        case ev.OrphanFound():
            return "orphan"
    return None


class PoolMetrics:
    """Instruments of one pool replica; ``watch`` adds the gauges read from its view."""

    def __init__(self, registry: Registry | None = None) -> None:
        self.registry = r = registry or Registry()
        self.rentals = r.counter("stoker_pool_rentals_total", "Rental attempts by outcome (rented, refused, "
                                 "offer_gone, unknown, duplicate).", ["outcome"])
        self.failures = r.counter("stoker_pool_failures_total", "Instance failures by reason.", ["reason"])
        self.terminations = r.counter("stoker_pool_terminations_total", "Instances terminated, by reason.",
                                      ["reason"])
        self.claims = r.histogram("stoker_pool_claim_seconds", "Claim command latency by outcome.", ["outcome"])
        self.reconciles = r.histogram("stoker_pool_reconcile_seconds", "Reconcile pass duration.",
                                      buckets=LONG_SECONDS)
        self.reconcile_errors = r.counter("stoker_pool_reconcile_errors_total", "Reconcile passes that failed.")
        self.leader = r.gauge("stoker_pool_leader", "1 while this replica runs the reconciler.")

    def observe_events(self, events: Sequence[Event]) -> None:
        """Count failures and terminations among events this replica appended."""
        for event in events:
            reason = failure_reason(event)
            if reason is not None:
                self.failures.inc(reason=reason)
            if isinstance(event, ev.Terminated):
                self.terminations.inc(reason=event.reason)

    def watch(self, view: Callable[[], v.PoolView], clock: Callable[[], datetime]) -> None:
        """Gauges computed from the view at scrape time."""
        def instances() -> Iterable[Sample]:
            counts = dict.fromkeys(PHASES, 0)
            for inst in view().instances.values():
                counts[inst.phase] = counts.get(inst.phase, 0) + 1
            return [({"state": phase}, float(n)) for phase, n in counts.items()]

        r = self.registry
        r.callback("stoker_pool_instances", "gauge", "Instances by state.", instances)
        r.callback("stoker_pool_spend_rate_dollars_per_hour", "gauge", "What the billing instances cost per hour.",
                   lambda: [({}, v.spend_rate(view()))])
        r.callback("stoker_pool_spend_today_dollars", "gauge", "Dollars accrued since 00:00 UTC.",
                   lambda: [({}, v.spend_today(view(), clock()))])
        r.callback("stoker_pool_safe_mode", "gauge", "1 while the pool is in safe mode.",
                   lambda: [({}, float(view().safe_mode))])
