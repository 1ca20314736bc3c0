"""The pool's ``simulate`` command: replay its own recent claims against policies (I/O shell)."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any

from nats.js import JetStreamContext

from libs.events import Recorded, subjects
from libs.events.replay import replay

from ..instance import PoolError
from .catalog import candidates
from .history import jobs_from_claims, model_from
from .report import choose, compare, to_json

MAX_DAYS = 60.0
MAX_JOBS = 20000


async def simulate_history(js: JetStreamContext, pool_id: str, days: float, specs: list[Any], now: datetime,
                           *, target_p95: float | None = None) -> dict[str, Any]:
    """Simulate ``specs`` (default: the candidates) on the pool's claims of the last ``days``."""
    if not 0 < days <= MAX_DAYS:
        raise PoolError(f"days must be between 0 and {MAX_DAYS:.0f}", "VALIDATION_FAILED")
    since = now - timedelta(days=days)
    records = []
    async for rec in replay(js, subjects.event_stream(subjects.POOL), subjects.events_filter(subjects.POOL),
                            since=since - timedelta(hours=1)):
        if isinstance(rec, Recorded) and getattr(rec.envelope.event, "pool_id", None) == pool_id:
            records.append(rec)
    jobs = jobs_from_claims(records, since)[-MAX_JOBS:]
    if not jobs:
        raise PoolError(f"no claims in the last {days:g} day(s) to simulate", "NOT_FOUND")
    model = model_from(records, since)
    comparison = await asyncio.to_thread(compare, jobs, specs or candidates(), model)
    out = to_json(comparison)
    best = choose(comparison, target_p95) if target_p95 is not None else None
    out["chosen"] = best.policy if best else None
    return out
