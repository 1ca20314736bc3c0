"""A demand trace and a boot model from recorded events (pure): generation jobs and pool rentals."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from libs.events import Recorded
from libs.events import generation as gen
from libs.events import pool as ev

from .model import BootModel, fit
from .trace import Job


def jobs_from(records: Iterable[Recorded], since: datetime | None = None) -> list[Job]:
    """One job per generation request since ``since``: its arrival and its GPU seconds (as completed,
    else as estimated, else 60 s)."""
    arrivals: dict[str, tuple[float, float, str]] = {}
    seconds: dict[str, float] = {}
    for rec in records:
        event, env = rec.envelope.event, rec.envelope
        if isinstance(event, gen.GenerationRequested):
            if since is None or env.occurred_at >= since:
                arrivals[env.aggregate_id] = (env.occurred_at.timestamp(), event.expected_seconds or 60.0,
                                              event.checkpoint or "")
        elif isinstance(event, gen.GenerationCompleted) and event.seconds > 0:
            seconds[env.aggregate_id] = event.seconds
    jobs = [Job(arrival=a, gpu_s=seconds.get(jid, est), checkpoint=ck) for jid, (a, est, ck) in arrivals.items()]
    return sorted(jobs, key=lambda j: j.arrival)


def model_from(records: Iterable[Recorded], since: datetime | None = None,
               default: BootModel = BootModel()) -> BootModel:
    """The boot model the pool's own rentals show (defaults where there are too few)."""
    rented_at: dict[str, float] = {}
    boots: list[float] = []
    prices: list[float] = []
    failed = 0
    for rec in records:
        event, env = rec.envelope.event, rec.envelope
        if since is not None and env.occurred_at < since:
            continue
        if isinstance(event, ev.InstanceRented):
            rented_at[env.aggregate_id] = env.occurred_at.timestamp()
            prices.append(event.dph)
        elif isinstance(event, ev.Ready) and env.aggregate_id in rented_at:
            boots.append(env.occurred_at.timestamp() - rented_at[env.aggregate_id])
        elif isinstance(event, ev.ExtractionFailed | ev.ProbeFailed):
            failed += 1
    return fit(boots, failed, len(rented_at), prices, default=default)


def jobs_from_claims(records: Iterable[Recorded], since: datetime | None = None) -> list[Job]:
    """The pool's own view of demand: one job per claim, arriving when claimed, as long as it was held."""
    claimed: dict[str, tuple[float, str]] = {}
    jobs: list[Job] = []
    for rec in records:
        event, env = rec.envelope.event, rec.envelope
        if isinstance(event, ev.Claimed) and (since is None or env.occurred_at >= since):
            claimed[env.aggregate_id] = (env.occurred_at.timestamp(), event.checkpoint or "")
        elif isinstance(event, ev.Released | ev.TerminateRequested) and env.aggregate_id in claimed:
            at, checkpoint = claimed.pop(env.aggregate_id)
            jobs.append(Job(arrival=at, gpu_s=max(1.0, env.occurred_at.timestamp() - at), checkpoint=checkpoint))
    return sorted(jobs, key=lambda j: j.arrival)
