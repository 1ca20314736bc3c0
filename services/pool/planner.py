"""One reconcile pass, decided without I/O: compare desired config, the view and the provider.

Level-triggered like a Kubernetes controller: given the same inputs it plans the same
actions, and running it again after the actions took effect plans nothing new.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import msgspec

from libs.events import pool as ev
from libs.events.base import Event

from . import view as v
from .instance import Instance, decide_release, decide_terminate
from .providers.base import ProviderInstance
from .status import fatal_failure, parse_label


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    """How patient the reconciler is with the provider."""

    listing_grace_s: float = 60.0  # a just-created instance may be missing from lists this long
    rent_grace_s: float = 120.0  # a pending rent with no instance after this long failed


class Target(msgspec.Struct, frozen=True, kw_only=True):
    """How many live instances to keep (rent up to it; never idle out below it) and the idle timeout
    of the rest. Without a policy: the config's ``min_size`` and ``idle_timeout_s``."""

    keep: int
    idle_timeout_s: float


def config_target(cfg: ev.PoolConfig) -> Target:
    """The target when no policy is applied."""
    return Target(keep=cfg.floor, idle_timeout_s=cfg.idle_timeout_s)


class Plan(msgspec.Struct, kw_only=True):
    """What one pass wants done. The shell appends the events and performs the calls."""

    events: dict[str, list[Event]] = {}  # instance id -> events to append
    config_events: list[Event] = []
    orphans: list[ProviderInstance] = []
    rent: int = 0
    destroy: list[Instance] = []  # terminating and still listed: (re)send destroy
    confirm_gone: list[Instance] = []  # absent from the list: confirm with show, then Terminated
    probe: list[Instance] = []

    def add(self, instance_id: str, events: list[Event]) -> None:
        """Queue events for one instance."""
        if events:
            self.events.setdefault(instance_id, []).extend(events)


def plan(view: v.PoolView, listed: list[ProviderInstance] | None, now: datetime, *,
         settings: Settings = Settings(), in_flight: frozenset[str] = frozenset(),
         target: Target | None = None) -> Plan:
    """Decide one reconcile pass. ``listed`` is None when the provider could not be listed.

    ``target`` comes from the pool's policy; min_size is always kept whatever it says.
    """
    result = Plan()
    cfg = view.config
    pool_id = view.pool_id
    grace = timedelta(seconds=settings.listing_grace_s)
    listed_by_id = {p.provider_id: p for p in listed or []}
    ours = {p.provider_id: p for p in listed or [] if (parsed := parse_label(p.label)) and parsed[0] == pool_id}
    known = v.by_provider_id(view)

    safe_mode = view.safe_mode
    if not safe_mode:
        reason = _budget_breach(view, now)
        if reason:
            result.config_events.append(ev.SafeModeChanged(pool_id=pool_id, enabled=True, reason=reason[0],
                                                           detail=reason[1]))
            safe_mode = True

    for inst in view.instances.values():
        if inst.id in in_flight or inst.phase in ("terminated", "failed"):
            continue
        if safe_mode and inst.phase != "terminating":
            result.add(inst.id, decide_terminate(inst, "safe_mode" if not result.config_events else "budget"))
            _plan_terminating(result, inst, listed, listed_by_id, now, grace, ours)
            continue
        if inst.phase == "renting":
            _plan_pending_rent(result, inst, listed, ours, now, settings)
        elif inst.phase == "loading":
            _plan_loading(result, inst, listed, listed_by_id, now, grace, cfg)
        elif inst.phase in ("ready", "claimed"):
            _plan_running(result, inst, listed, listed_by_id, now, grace)
        elif inst.phase == "terminating":
            _plan_terminating(result, inst, listed, listed_by_id, now, grace, ours)

    if listed is not None:
        for pid, p in ours.items():
            parsed = parse_label(p.label)
            assert parsed is not None
            owner = view.instances.get(parsed[1])
            if pid in known or parsed[1] in in_flight:
                continue
            if owner is not None and owner.phase == "renting":
                continue  # adopted above
            result.orphans.append(p)

    if not safe_mode and listed is not None:
        want = target or config_target(view.config)
        want = Target(keep=min(max(want.keep, view.config.floor), view.config.max_size),
                      idle_timeout_s=want.idle_timeout_s)
        _plan_idle(result, view, now, want)
        result.rent = _rent_count(view, result, want)
    return result


def _budget_breach(view: v.PoolView, now: datetime) -> tuple[str, str] | None:
    caps = view.config.spend_caps
    rate = v.spend_rate(view)
    if caps.max_dph is not None and rate > caps.max_dph:
        return "budget_dph", f"spend rate ${rate:.2f}/h is over the cap ${caps.max_dph:.2f}/h"
    if caps.max_per_day is not None:
        today = v.spend_today(view, now)
        if today >= caps.max_per_day:
            return "budget_day", f"spent ${today:.2f} today, cap ${caps.max_per_day:.2f}/day"
    return None


def _plan_pending_rent(result: Plan, inst: Instance, listed: list[ProviderInstance] | None,
                       ours: dict[str, ProviderInstance], now: datetime, settings: Settings) -> None:
    """A rent whose outcome was never recorded (crash between the call and the event)."""
    if listed is None or inst.offer is None:
        return
    match = next((p for p in ours.values() if (parse_label(p.label) or ("", ""))[1] == inst.id), None)
    if match is not None:
        result.add(inst.id, [ev.InstanceRented(pool_id=inst.pool_id, provider=inst.provider,
                                               provider_id=match.provider_id, offer=inst.offer,
                                               dph=match.dph or inst.offer.dph, label=inst.label)])
        return
    if inst.requested_at and now - inst.requested_at > timedelta(seconds=settings.rent_grace_s):
        # Never reached the provider (or it refused). If it shows up later, it is an orphan.
        result.add(inst.id, [ev.RentFailed(pool_id=inst.pool_id, message="no instance with this rental's label "
                                           "appeared at the provider")])


def _plan_loading(result: Plan, inst: Instance, listed: list[ProviderInstance] | None,
                  listed_by_id: dict[str, ProviderInstance], now: datetime, grace: timedelta,
                  cfg: ev.PoolConfig) -> None:
    if listed is None:
        return
    p = listed_by_id.get(inst.provider_id)
    if p is None:
        if _past(inst.rented_at, now, grace):
            result.confirm_gone.append(inst)
        return
    if (p.actual_status, p.status_msg) != (inst.actual_status, inst.status_msg) or \
            (p.ssh_host, p.ssh_port) != (inst.ssh_host, inst.ssh_port):
        result.add(inst.id, [ev.InstanceStatusChanged(pool_id=inst.pool_id, actual_status=p.actual_status,
                                                      status_msg=p.status_msg, ssh_host=p.ssh_host,
                                                      ssh_port=p.ssh_port)])
    kind = fatal_failure(p.actual_status, p.status_msg)
    offer = inst.offer
    if kind is not None:
        result.add(inst.id, [
            ev.ExtractionFailed(pool_id=inst.pool_id, kind=kind, status_msg=p.status_msg or str(p.actual_status),
                                host_id=p.host_id or (offer.host_id if offer else ""),
                                machine_id=p.machine_id or (offer.machine_id if offer else "")),
            ev.TerminateRequested(pool_id=inst.pool_id, reason="extraction_failed", detail=p.status_msg or ""),
        ])
        result.destroy.append(inst)
        return
    if _past(inst.rented_at, now, timedelta(seconds=cfg.readiness.probe_timeout_s)):
        result.add(inst.id, [
            ev.ProbeFailed(pool_id=inst.pool_id, reason=f"not ready after {cfg.readiness.probe_timeout_s:.0f}s",
                           host_id=offer.host_id if offer else p.host_id,
                           machine_id=offer.machine_id if offer else p.machine_id),
            ev.TerminateRequested(pool_id=inst.pool_id, reason="probe_timeout"),
        ])
        result.destroy.append(inst)
        return
    if p.actual_status == "running" and p.comfy_url:
        result.probe.append(msgspec.structs.replace(inst, base_url=p.comfy_url))


def _plan_running(result: Plan, inst: Instance, listed: list[ProviderInstance] | None,
                  listed_by_id: dict[str, ProviderInstance], now: datetime, grace: timedelta) -> None:
    if inst.phase == "claimed" and inst.lease is not None and inst.lease.expires_at <= now:
        result.add(inst.id, decide_release(inst, inst.lease.lease_id, expired=True))
    if listed is not None and inst.provider_id not in listed_by_id and _past(inst.rented_at, now, grace):
        result.confirm_gone.append(inst)


def _plan_terminating(result: Plan, inst: Instance, listed: list[ProviderInstance] | None,
                      listed_by_id: dict[str, ProviderInstance], now: datetime, grace: timedelta,
                      ours: dict[str, ProviderInstance]) -> None:
    if listed is None:
        if inst.provider_id:
            result.destroy.append(inst)
        return
    if not inst.provider_id:
        # Terminated before the rental completed: adopt-and-destroy if it appears, else done.
        match = next((p for p in ours.values() if (parse_label(p.label) or ("", ""))[1] == inst.id), None)
        if match is None and _past(inst.requested_at, now, grace):
            result.add(inst.id, [ev.Terminated(pool_id=inst.pool_id, reason=_reason(inst),
                                               detail="rental never reached the provider")])
        return
    if inst.provider_id in listed_by_id:
        result.destroy.append(inst)
    elif _past(inst.rented_at, now, grace):
        result.confirm_gone.append(inst)
    else:
        result.destroy.append(inst)


def _plan_idle(result: Plan, view: v.PoolView, now: datetime, target: Target) -> None:
    live = [i for i in v.live(view) if not result.events.get(i.id)]
    excess = len(live) - target.keep
    idle = sorted((i for i in live if i.phase == "ready" and i.last_used_at is not None
                   and (now - i.last_used_at).total_seconds() >= target.idle_timeout_s),
                  key=lambda i: i.last_used_at or now)
    for inst in idle[:max(0, excess)]:
        result.add(inst.id, decide_terminate(inst, "idle"))


def _rent_count(view: v.PoolView, result: Plan, target: Target) -> int:
    ending = {iid for iid, evs in result.events.items()
              if any(isinstance(e, ev.TerminateRequested | ev.RentFailed) for e in evs)}
    live = [i for i in v.live(view) if i.id not in ending]
    return max(0, target.keep - len(live))


def _past(start: datetime | None, now: datetime, span: timedelta) -> bool:
    return start is not None and now - start > span


def _reason(inst: Instance) -> ev.TerminationReason:
    reason = inst.terminate_reason or "admin"
    return reason  # type: ignore[return-value]
