"""The generation service's metrics: queue depth, wait, job duration, outcomes and failures by reason.

Outcomes are counted where this replica decided them (summing over replicas is right); queue
depth is read from the replica's view when scraped.
"""

from __future__ import annotations

from collections.abc import Callable

from libs.observability.metrics import LONG_SECONDS, Registry

from . import domain as d
from .view import JobsView


class GenMetrics:
    """Instruments of one generation replica; ``watch`` adds the gauges read from its view."""

    def __init__(self, registry: Registry | None = None) -> None:
        self.registry = r = registry or Registry()
        self.wait = r.histogram("stoker_gen_queue_wait_seconds", "From request to the first claimed instance.",
                                buckets=LONG_SECONDS)
        self.duration = r.histogram("stoker_gen_job_duration_seconds", "From request to the end, by final status.",
                                    ["status"], buckets=LONG_SECONDS)
        self.finished = r.counter("stoker_gen_jobs_finished_total", "Jobs that ended, by status.", ["status"])
        self.failures = r.counter("stoker_gen_job_failures_total", "Failed jobs by reason.", ["reason"])
        self.lost = r.counter("stoker_gen_instances_lost_total", "Attempts that lost their instance.")

    def claimed(self, job: d.Job) -> None:
        """A job got an instance: its first attempt ends its wait in the queue."""
        if job.attempts == 1 and job.current is not None and job.current.claimed_at and job.requested_at:
            self.wait.observe(max(0.0, (job.current.claimed_at - job.requested_at).total_seconds()))

    def ended(self, job: d.Job) -> None:
        """A job reached a final status."""
        self.finished.inc(status=job.status)
        if job.finished_at and job.requested_at:
            self.duration.observe(max(0.0, (job.finished_at - job.requested_at).total_seconds()), status=job.status)
        if job.status == "failed":
            self.failures.inc(reason=job.failure.reason if job.failure else "unknown")

    def watch(self, view: Callable[[], JobsView], busy: Callable[[], int]) -> None:
        """Gauges computed at scrape time: jobs queued and running (all replicas), messages this worker handles."""
        r = self.registry
        r.callback("stoker_gen_queue_depth", "gauge", "Jobs waiting for an instance.",
                   lambda: [({}, float(len(view().queued)))])
        r.callback("stoker_gen_jobs_running", "gauge", "Jobs running on an instance.",
                   lambda: [({}, float(len(view().running)))])
        r.callback("stoker_gen_worker_busy", "gauge", "Queue messages this replica is handling.",
                   lambda: [({}, float(busy()))])
