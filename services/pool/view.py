"""The pool's read model: every instance, the configuration, safe mode, host reputation, spend.

``project(view, recorded)`` is pure and is the only way the view changes.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import msgspec

from libs.events import Position, Recorded
from libs.events import pool as ev

from . import reputation
from .instance import LIVE_PHASES, Instance, accrued, evolve, is_billing

# Terminated instances stay in the view this long (for the dashboard and usage), then fold into totals.
KEEP_ENDED = timedelta(hours=24)


class JoinToken(msgspec.Struct, frozen=True, kw_only=True):
    """A join token as the pool knows it (its hash, never the token)."""

    id: str
    token_sha256: str
    label: str = ""
    dph: float = 0.0
    created_at: datetime | None = None
    revoked: bool = False


class Node(msgspec.Struct, frozen=True, kw_only=True):
    """One of your own boxes that joined."""

    id: str
    token_id: str
    name: str
    url: str
    gpu_name: str = ""
    joined_at: datetime | None = None
    position: Position = Position(0, 0)


class PoolView(msgspec.Struct, frozen=True, kw_only=True):
    """Everything the pool knows, as of stream sequence ``seq``."""

    pool_id: str = "default"
    config: ev.PoolConfig = ev.PoolConfig()
    config_position: Position = Position(0, 0)
    configured: bool = False
    safe_mode: bool = False
    safe_mode_reason: str = ""
    instances: dict[str, Instance] = {}
    penalties: dict[str, reputation.Penalty] = {}
    problems: dict[str, ev.Problem] = {}  # by code
    ended_cost: float = 0.0
    ended_cost_by_day: dict[str, float] = {}
    resets: int = 0
    seq: int = 0
    problems: dict[str, ev.Problem] = {}
    join_tokens: dict[str, JoinToken] = {}
    nodes: dict[str, Node] = {}
    policy: ev.PolicySpec | None = None
    decisions: tuple[tuple[datetime, ev.PolicyDecided], ...] = ()  # the latest, newest last
    demand: tuple[tuple[float, float], ...] = ()  # (claimed at, seconds held) of recent claims, oldest first


KEEP_DECISIONS = 20
KEEP_DEMAND = 2000


def project(view: PoolView, rec: Recorded) -> PoolView:
    """Fold one recorded pool event into the view."""
    env = rec.envelope
    event = env.event
    at = env.occurred_at
    position = Position(env.aggregate_version, rec.seq)
    if getattr(event, "pool_id", view.pool_id) != view.pool_id:
        return msgspec.structs.replace(view, seq=rec.seq)  # another pool sharing the stream
    if env.aggregate_type == ev.CONFIG:
        return _project_config(view, event, position, rec.seq, at)
    if env.aggregate_type in (ev.JOIN_TOKEN, ev.NODE):
        return _project_nodes(view, env.aggregate_id, event, position, rec.seq, at)
    if env.aggregate_type != ev.INSTANCE:
        return msgspec.structs.replace(view, seq=rec.seq)
    instances = dict(view.instances)
    current = instances.get(env.aggregate_id) or Instance(id=env.aggregate_id, pool_id=getattr(event, "pool_id", ""))
    updated = evolve(current, event, at)
    instances[env.aggregate_id] = msgspec.structs.replace(updated, position=position)
    penalties = view.penalties
    if isinstance(event, ev.ExtractionFailed):
        penalties = reputation.penalize(penalties, event.host_id, event.kind, at, event.status_msg)
    elif isinstance(event, ev.ProbeFailed):
        penalties = reputation.penalize(penalties, event.host_id, "probe_timeout", at, event.reason)
    elif isinstance(event, ev.Terminated) and event.reason == "provider_lost" and current.offer:
        penalties = reputation.penalize(penalties, current.offer.host_id, "vanished", at)
    view = msgspec.structs.replace(view, instances=instances, penalties=penalties, seq=rec.seq)
    if isinstance(event, ev.Released) and current.phase == "claimed" and current.phase_since is not None:
        held = (current.phase_since.timestamp(), max(0.0, (at - current.phase_since).total_seconds()))
        view = msgspec.structs.replace(view, demand=(view.demand + (held,))[-KEEP_DEMAND:])
    if isinstance(event, ev.Terminated | ev.RentFailed):
        view = _compact(view, at)
    return view


def _project_config(view: PoolView, event: object, position: Position, seq: int, at: datetime) -> PoolView:
    match event:
        case ev.PoolConfigured():
            return msgspec.structs.replace(view, config=event.config,
                                           config_position=position, configured=True, seq=seq)
        case ev.SafeModeChanged():
            return msgspec.structs.replace(view, safe_mode=event.enabled,
                                           safe_mode_reason=event.reason if event.enabled else "",
                                           config_position=position, seq=seq)
        case ev.PoolReset():  # a fresh start: host penalties and problems are forgotten
            return msgspec.structs.replace(view, resets=view.resets + 1, penalties={}, problems={},
                                           config_position=position, seq=seq)
        case ev.ProblemRaised():
            old = view.problems.get(event.code)
            problem = ev.Problem(code=event.code, message=event.message, since=old.since if old else at)
            return msgspec.structs.replace(view, problems={**view.problems, event.code: problem},
                                           config_position=position, seq=seq)
        case ev.ProblemCleared():
            problems = {k: p for k, p in view.problems.items() if k != event.code}
            return msgspec.structs.replace(view, problems=problems, config_position=position, seq=seq)
        case ev.PolicyApplied():
            return msgspec.structs.replace(view, policy=event.policy, config_position=position, seq=seq)
        case ev.PolicyDecided():
            decisions = (view.decisions + ((at, event),))[-KEEP_DECISIONS:]
            return msgspec.structs.replace(view, decisions=decisions, config_position=position, seq=seq)
    return msgspec.structs.replace(view, config_position=position, seq=seq)


def _project_nodes(view: PoolView, key: str, event: object, position: Position, seq: int, at: datetime) -> PoolView:
    match event:
        case ev.JoinTokenCreated():
            token = JoinToken(id=key, token_sha256=event.token_sha256, label=event.label, dph=event.dph,
                              created_at=at)
            return msgspec.structs.replace(view, join_tokens={**view.join_tokens, key: token}, seq=seq)
        case ev.JoinTokenRevoked() if key in view.join_tokens:
            token = msgspec.structs.replace(view.join_tokens[key], revoked=True)
            return msgspec.structs.replace(view, join_tokens={**view.join_tokens, key: token}, seq=seq)
        case ev.NodeJoined():
            node = Node(id=key, token_id=event.token_id, name=event.name, url=event.url, gpu_name=event.gpu_name,
                        joined_at=at, position=position)
            return msgspec.structs.replace(view, nodes={**view.nodes, key: node}, seq=seq)
    return msgspec.structs.replace(view, seq=seq)


def _compact(view: PoolView, now: datetime) -> PoolView:
    """Fold instances that ended long ago into totals, so the view stays small."""
    keep: dict[str, Instance] = {}
    ended = view.ended_cost
    by_day = dict(view.ended_cost_by_day)
    for key, inst in view.instances.items():
        if inst.phase in ("terminated", "failed") and inst.terminated_at and now - inst.terminated_at > KEEP_ENDED:
            ended += sum(inst.cost_by_phase.values())
            day = inst.terminated_at.date().isoformat()
            by_day[day] = by_day.get(day, 0.0) + sum(inst.cost_by_phase.values())
        else:
            keep[key] = inst
    if len(keep) == len(view.instances):
        return view
    return msgspec.structs.replace(view, instances=keep, ended_cost=ended, ended_cost_by_day=by_day,
                                   penalties=reputation.expire(view.penalties, now))


# --- questions the rest of the pool asks the view -----------------------------------

def live(view: PoolView) -> list[Instance]:
    """Instances being rented, loading, ready or claimed (not on their way out)."""
    return [i for i in view.instances.values() if i.phase in LIVE_PHASES]


def billing(view: PoolView) -> list[Instance]:
    """Instances the provider may be charging for."""
    return [i for i in view.instances.values() if is_billing(i)]


def spend_rate(view: PoolView) -> float:
    """Current pool spend in $/h."""
    return sum(i.dph for i in billing(view))


def spend_today(view: PoolView, now: datetime) -> float:
    """Dollars accrued since 00:00 UTC today by instances in the view."""
    midnight = now.astimezone(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
    total = view.ended_cost_by_day.get(midnight.date().isoformat(), 0.0)
    for inst in view.instances.values():
        start = inst.rented_at
        if start is None or not inst.dph:
            continue
        end = inst.terminated_at or now
        overlap = (min(end, now) - max(start, midnight)).total_seconds()
        if overlap > 0:
            total += inst.dph * overlap / 3600.0
    return total


def cost_by_state(view: PoolView, now: datetime) -> dict[str, float]:
    """Accrued cost of every instance in the view, per state bucket."""
    totals: dict[str, float] = {}
    for inst in view.instances.values():
        for bucket, amount in accrued(inst, now).items():
            totals[bucket] = totals.get(bucket, 0.0) + amount
    return totals


def by_provider_id(view: PoolView) -> dict[str, Instance]:
    """Instances keyed by the provider's id (those that got one and have not ended).

    A terminated rental's id is not "known": an instance listed under it bills although we ended it
    (a zombie, or an id the provider reused), so it is an orphan to terminate.
    """
    return {i.provider_id: i for i in view.instances.values()
            if i.provider_id and i.phase not in ("terminated", "failed")}
