"""The applied policy in the live pool (pure): its target for the planner, and a PolicyDecided event
whenever what it keeps changes."""

from __future__ import annotations

from datetime import datetime

from libs.events import pool as ev
from libs.events.base import Event

from .. import planner
from .. import view as v
from .base import DEFAULT_BOOT_S, Observation, quantile
from .catalog import make
from .queue import rent_for_queue


def decide(view: v.PoolView, now: datetime) -> tuple[planner.Target | None, list[Event]]:
    """(target, events to append) for the pool's policy; (None, []) without one."""
    if view.policy is None:
        return None, []
    policy = make(view.policy)
    for claimed_at, held_s in view.demand:
        policy.observe(claimed_at, held_s or 1.0)
    live = v.live(view)
    boots = sorted((i.ready_at - i.rented_at).total_seconds() for i in view.instances.values()
                   if i.ready_at is not None and i.rented_at is not None)
    used = [i.last_used_at.timestamp() for i in view.instances.values() if i.last_used_at is not None]
    obs = Observation(now=now.timestamp(), live=len(live), busy=sum(1 for i in live if i.phase == "claimed"),
                      boot_s=quantile(boots, 0.5) if boots else DEFAULT_BOOT_S,
                      last_activity=max(used) if used else None)
    d = policy.decide(obs)
    target = planner.Target(keep=d.keep, idle_timeout_s=d.idle_timeout_s)
    last = view.decisions[-1][1] if view.decisions else None
    if last is not None and (last.policy, last.keep, last.idle_timeout_s) == (policy.name, d.keep, d.idle_timeout_s):
        return target, []
    return target, [ev.PolicyDecided(pool_id=view.pool_id, policy=policy.name, keep=d.keep,
                                     idle_timeout_s=d.idle_timeout_s, reason=d.reason)]


GEN_PREFIX = "prewarm:gen:"  # the generation service's autoscale prewarms (one per waiting job)


def cap_prewarm(view: v.PoolView, now: datetime, count: int, key: str) -> tuple[int, str]:
    """(instances to rent, why) for a prewarm of ``count``: the generation service's prewarms for
    waiting jobs follow the policy's queue rule; an operator's prewarm is never cut."""
    if view.policy is None or not key.startswith(GEN_PREFIX):
        return count, ""
    policy = make(view.policy)
    for claimed_at, held_s in view.demand:
        policy.observe(claimed_at, held_s or 1.0)
    live = v.live(view)
    d = policy.decide(Observation(now=now.timestamp(), live=len(live),
                                  busy=sum(1 for i in live if i.phase == "claimed")))
    if d.queue_wait_s <= 0:
        return count, ""
    coming = sum(1 for i in live if i.phase != "claimed")
    mean = policy.history.mean_gpu_s() if hasattr(policy, "history") else 60.0  # type: ignore[attr-defined]
    allowed = rent_for_queue(waiting=count + coming, live=len(live), coming=coming, max_size=view.config.max_size,
                             mean_gpu_s=mean, queue_wait_s=d.queue_wait_s)
    return allowed, f"{policy.name}: the queue drains within {d.queue_wait_s:.0f} s on {len(live)} instance(s)"
