"""Why a job is waiting, and for about how long (pure: the job, the queue, the pool view, now)."""

from __future__ import annotations

from datetime import datetime

from services.pool.instance import Instance
from services.pool.view import PoolView

from .api import Progress, Waiting
from .domain import Job
from .workflow import LOADER_CLASSES

DEFAULT_START_S = 300.0  # rent-to-ready when the pool has no history to learn from
NO_RENTAL_AFTER_S = 120.0  # with nothing renting after this long (and twice the usual start), renting is stuck
RECENT_RENT_FAILURE_S = 600.0  # a rent refusal older than this no longer explains a wait
SAFE_MODE_WHY = {"admin": "an admin turned it on", "budget_dph": "the spend-rate cap ($/h) was reached",
                 "budget_day": "the daily spend cap was reached"}


def typical_start_s(pool: PoolView | None) -> float:
    """Mean seconds from rent request to Ready over the instances the pool remembers."""
    if pool is None:
        return DEFAULT_START_S
    spans = [(i.ready_at - i.requested_at).total_seconds() for i in pool.instances.values()
             if i.ready_at is not None and i.requested_at is not None]
    return sum(spans) / len(spans) if spans else DEFAULT_START_S


def blocked(pool: PoolView | None, now: datetime) -> Waiting | None:
    """Why the pool will not rent for a waiting job at all (safe mode, no room, rentals refused), or None."""
    if pool is None:
        return None
    if pool.safe_mode:
        why = SAFE_MODE_WHY.get(pool.safe_mode_reason, pool.safe_mode_reason or "no reason given")
        return Waiting(reason="safe_mode", message=f"safe mode is on ({why}): the pool rents no GPU and the job "
                                                   "waits until an admin turns safe mode off")
    if pool.config.max_size <= 0:
        return Waiting(reason="pool_closed", message="the pool's maximum size is 0: it rents no GPU until an admin "
                                                     "raises it")
    live = [i for i in pool.instances.values() if i.phase in ("renting", "loading", "ready", "claimed")]
    refused = [i for i in pool.instances.values() if i.phase == "failed" and i.rented_at is None
               and i.terminated_at is not None and (now - i.terminated_at).total_seconds() <= RECENT_RENT_FAILURE_S]
    if not live and refused:
        last = max(refused, key=lambda i: i.terminated_at or now)
        return Waiting(reason="cannot_rent", message=f"the pool cannot rent a GPU right now (the provider refused: "
                                                     f"{last.failure or 'no reason given'}); it keeps trying")
    return None


def _loading_message(loading: list[Instance]) -> str:
    """What the most advanced loading instance's agent says (downloading 40 %, starting ComfyUI)."""
    best = max(loading, key=lambda i: (i.agent_phase == "starting_comfyui",
                                       i.bytes_done / i.bytes_total if i.bytes_total else 0.0))
    if best.agent_phase == "downloading" and best.bytes_total:
        return f"an instance is downloading its models ({100 * best.bytes_done // best.bytes_total} %)"
    if best.agent_phase == "starting_comfyui":
        return "an instance is starting ComfyUI"
    return "an instance is loading (ComfyUI and its models)"


def _remaining(job: Job, now: datetime) -> float:
    expected = job.request.expected_seconds if job.request else 0.0
    start = job.current.claimed_at if job.current and job.current.claimed_at else now
    return max(0.0, expected - (now - start).total_seconds())


def explain(job: Job, ahead: list[Job], running: list[Job], pool: PoolView | None, now: datetime,
            progress: Progress | None = None) -> Waiting | None:
    """The waiting reason of a queued job (or a running one loading a model); None when not waiting."""
    if job.status == "running":
        if progress is not None and progress.kind == "executing" and progress.node_type in LOADER_CLASSES:
            what = job.request.checkpoint if job.request and job.request.checkpoint else "a model"
            return Waiting(reason="loading_model", message=f"loading {what} on the instance")
        return None
    if job.status != "queued":
        return None
    stuck = blocked(pool, now)
    if stuck is not None:
        return stuck
    insts = [i for i in (pool.instances.values() if pool else []) if i.phase in ("renting", "loading", "ready",
                                                                                "claimed")]
    free = [i for i in insts if i.phase == "ready"]
    busy = [i for i in insts if i.phase == "claimed"]
    loading = [i for i in insts if i.phase == "loading"]
    renting = [i for i in insts if i.phase == "renting"]
    start = typical_start_s(pool)
    free_in = min((_remaining(j, now) for j in running), default=0.0)
    if ahead:
        slots = max(1, len(free) + len(busy))
        work = sum(j.request.expected_seconds for j in ahead if j.request) / slots
        return Waiting(reason="behind_jobs", message=f"behind {len(ahead)} job(s) in the queue",
                       expected_wait_s=round((0.0 if free else free_in) + work, 1), jobs_ahead=len(ahead))
    if free:
        return Waiting(reason="starting", message="an instance is free; the job is starting", expected_wait_s=0.0)
    if loading:
        since = min((now - i.rented_at).total_seconds() for i in loading if i.rented_at) if any(
            i.rented_at for i in loading) else 0.0
        left = max(5.0, start - since)
        if busy:
            left = min(left, free_in)
        return Waiting(reason="instance_loading", message=_loading_message(loading),
                       expected_wait_s=round(left, 1))
    if renting:
        since = min((now - i.requested_at).total_seconds() for i in renting if i.requested_at) if any(
            i.requested_at for i in renting) else 0.0
        left = max(5.0, start - since)
        if busy:
            left = min(left, free_in)
        return Waiting(reason="renting_instance", message="renting an instance", expected_wait_s=round(left, 1))
    if busy:
        return Waiting(reason="instances_busy", message=f"all {len(busy)} instance(s) are busy",
                       expected_wait_s=round(free_in, 1))
    if pool is not None and pool.problems:
        problem = min(pool.problems.values(), key=lambda p: p.since)
        return Waiting(reason="pool_problem", message=f"no instance can be rented: {problem.message}")
    waited = (now - job.requested_at).total_seconds() if job.requested_at else 0.0
    if waited > max(NO_RENTAL_AFTER_S, 2 * start):  # asked long ago and nothing is even renting: say so, no estimate
        return Waiting(reason="cannot_rent", message=f"no GPU could be rented in the {round(waited)} s this job has "
                                                     "waited (no offer matches the pool's filter, a spend cap, or the "
                                                     "provider refuses); an admin sees why on the pool page")
    return Waiting(reason="no_instance", message="the pool has no instance; one is requested",
                   expected_wait_s=round(start, 1))


def instances_wanted(pool: PoolView, waiting: int) -> int:
    """How many instances to ask the pool for so that waiting jobs get one (never past max_size)."""
    if pool.safe_mode or waiting <= 0:
        return 0
    live = [i for i in pool.instances.values() if i.phase in ("renting", "loading", "ready", "claimed")]
    coming = sum(1 for i in live if i.phase in ("renting", "loading", "ready"))
    room = pool.config.max_size - len(live)
    return max(0, min(waiting - coming, room))
