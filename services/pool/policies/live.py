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
