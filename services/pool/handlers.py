"""Command handlers: each decodes nothing and does no transport, it decides and appends."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

import msgspec

from libs.events import ConcurrencyError, Metadata
from libs.events import pool as ev
from libs.events.ids import new_id

from . import api
from . import view as v
from .instance import Instance, PoolError, accrued, cost_bucket, decide_claim, decide_release, decide_renew, \
    decide_terminate
from .metrics import PoolMetrics
from .policies import describe as describe_policy
from .policies.live import cap_prewarm
from .policy import parse_config
from .reconciler import Reconciler
from .writer import PoolWriter

CLAIM_ATTEMPTS = 8


def meta_of(req: api.Request) -> Metadata:
    """Envelope metadata for the events a request causes."""
    return Metadata(actor=req.actor, correlation_id=req.correlation_id)


def merge(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """Deep-merge a partial update into a config dict."""
    out = dict(base)
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


class Commands:
    """The pool's command side, shared by every replica (writes are optimistic)."""

    def __init__(self, writer: PoolWriter, reconciler: Reconciler, clock: Callable[[], datetime], *,
                 metrics: PoolMetrics | None = None) -> None:
        self.writer = writer
        self.reconciler = reconciler
        self.clock = clock
        self.metrics = metrics or PoolMetrics()
        self._claiming: set[str] = set()

    def _instance(self, instance_id: str) -> Instance:
        inst = self.writer.view.instances.get(instance_id)
        if inst is None:
            raise PoolError(f"no instance {instance_id}", "NOT_FOUND")
        return inst

    async def claim(self, req: api.ClaimRequest) -> api.Claim:
        """Atomically take one Ready instance (two claimers never get the same one)."""
        started = time.perf_counter()
        outcome = "error"
        try:
            claim = await self._claim(req)
            outcome = "ok"
            return claim
        except PoolError as exc:
            outcome = "no_capacity" if exc.code == "NO_CAPACITY" else "error"
            raise
        finally:
            self.metrics.claims.observe(time.perf_counter() - started, outcome=outcome)

    async def _claim(self, req: api.ClaimRequest) -> api.Claim:
        tried: set[str] = set()
        for _ in range(CLAIM_ATTEMPTS):
            view = self.writer.view
            ready = [i for i in view.instances.values()
                     if i.phase == "ready" and i.id not in tried and i.id not in self._claiming]
            if not ready:
                break
            random.shuffle(ready)  # spread concurrent claimers over equal candidates
            ready.sort(key=lambda i: req.checkpoint is not None and req.checkpoint not in i.models)
            inst = ready[0]
            lease_s = req.lease_s or view.config.lease_max_s
            events = decide_claim(inst, lease_id=new_id(), holder=req.holder, lease_s=lease_s,
                                  lease_max_s=view.config.lease_max_s, checkpoint=req.checkpoint, now=self.clock())
            self._claiming.add(inst.id)
            try:
                await self.writer.instance(inst.id, events, inst.position, meta_of(req))
            except ConcurrencyError:
                tried.add(inst.id)
                continue
            finally:
                self._claiming.discard(inst.id)
            claimed = events[0]
            assert isinstance(claimed, ev.Claimed) and inst.base_url is not None
            return api.Claim(instance_id=inst.id, lease_id=claimed.lease_id, base_url=inst.base_url,
                             expires_at=claimed.expires_at, models=inst.models,
                             gpu_name=inst.offer.gpu_name if inst.offer else "", dph=inst.dph)
        raise PoolError("no ready instance is free", "NO_CAPACITY")

    async def release(self, req: api.ReleaseRequest) -> dict[str, Any]:
        """Return a claimed instance to the pool (idempotent)."""
        inst = self._instance(req.instance_id)
        events = decide_release(inst, req.lease_id)
        await self.writer.instance(inst.id, events, inst.position, meta_of(req))
        return {"released": bool(events)}

    async def renew(self, req: api.RenewRequest) -> dict[str, Any]:
        """Extend a held lease."""
        inst = self._instance(req.instance_id)
        cfg = self.writer.view.config
        events = decide_renew(inst, req.lease_id, lease_s=req.lease_s or cfg.lease_max_s,
                              lease_max_s=cfg.lease_max_s, now=self.clock())
        await self.writer.instance(inst.id, events, inst.position, meta_of(req))
        return {"expires_at": events[0].expires_at}  # type: ignore[attr-defined]

    async def prewarm(self, req: api.PrewarmRequest) -> dict[str, Any]:
        """Rent instances now, beyond the desired size, up to the maximum."""
        view = self.writer.view
        if view.safe_mode:
            raise PoolError("the pool is in safe mode: it rents nothing", "SAFE_MODE")
        if req.count < 1:
            raise PoolError("count must be at least 1", "VALIDATION_FAILED")
        room = view.config.max_size - len(v.live(view))
        if room < req.count:
            raise PoolError(f"max_size {view.config.max_size} allows {max(room, 0)} more instance(s)", "LIMIT")
        key = f"prewarm:{req.idempotency_key or new_id()}"
        count, why = cap_prewarm(view, self.clock(), req.count, key)
        if count < 1:
            return {"instance_ids": [], "held_back": why}
        ids = await self.reconciler.rent(count, key=key, meta=meta_of(req))
        return {"instance_ids": ids}

    async def terminate(self, req: api.TerminateRequest) -> dict[str, Any]:
        """Terminate one instance (the reconciler destroys it and confirms)."""
        inst = self._instance(req.instance_id)
        events = decide_terminate(inst, "admin", req.reason)
        await self.writer.instance(inst.id, events, inst.position, meta_of(req))
        if events and inst.provider_id:
            await self.reconciler._destroy(inst)
        return {"terminating": bool(events)}

    async def configure(self, req: api.ConfigureRequest) -> dict[str, Any]:
        """Apply a partial configuration update."""
        view = self.writer.view
        changes = dict(req.changes)
        if "desired_size" in changes and "min_size" not in changes:
            changes["min_size"] = changes["desired_size"]  # the old name of min_size
        merged = merge(msgspec.to_builtins(view.config), changes)
        cfg = parse_config(merged)
        await self.writer.config([ev.PoolConfigured(pool_id=view.pool_id, config=cfg)], meta_of(req))
        return msgspec.to_builtins(cfg)

    async def safe_mode(self, req: api.SafeModeRequest) -> dict[str, Any]:
        """Turn safe mode on or off."""
        view = self.writer.view
        if view.safe_mode != req.enabled:
            await self.writer.config([ev.SafeModeChanged(pool_id=view.pool_id, enabled=req.enabled,
                                                         reason=req.reason)], meta_of(req))
        return {"safe_mode": req.enabled}

    async def reset(self, req: api.ResetRequest) -> dict[str, Any]:
        """Record a reset; pending rentals not in flight are given up (orphan checks catch billers)."""
        view = self.writer.view
        await self.writer.config([ev.PoolReset(pool_id=view.pool_id, reason=req.reason)], meta_of(req))
        given_up = 0
        for inst in list(self.writer.view.instances.values()):
            if inst.phase == "renting" and not inst.provider_id and inst.id not in self.reconciler.in_flight:
                try:
                    await self.writer.instance(inst.id, [ev.RentFailed(pool_id=view.pool_id, message="reset")],
                                               inst.position, meta_of(req))
                    given_up += 1
                except ConcurrencyError:
                    pass
        return {"reset": True, "pending_rentals_given_up": given_up}

    async def host_access(self, req: api.HostAccessRequest) -> api.HostAccess:
        """The instance secret of the live instance serving ``base_url`` (for Stoker's own callers)."""
        url = req.base_url.rstrip("/")
        for inst in self.writer.view.instances.values():
            if inst.phase in ("ready", "claimed", "loading") and (inst.base_url or "").rstrip("/") == url:
                return api.HostAccess(instance_id=inst.id, secret=self.reconciler.secret_for(inst.id) or "")
        raise PoolError("no live instance serves that URL", "NOT_FOUND")

    async def host_logs(self, req: api.HostLogsRequest) -> dict[str, Any]:
        """An instance's agent and ComfyUI logs, asked of its agent with the instance secret."""
        inst = self._instance(req.instance_id)
        secret = self.reconciler.secret_for(inst.id)
        fetch = getattr(self.reconciler.probe, "logs", None)
        if secret is None or fetch is None:
            raise PoolError("this pool's hosts run no Stoker agent: no logs to fetch", "NOT_FOUND")
        if not inst.base_url or inst.phase in ("terminated", "failed"):
            raise PoolError(f"instance {inst.id} has no agent answering (it is {inst.phase})", "NOT_FOUND")
        if not 1 <= req.tail <= 10000:
            raise PoolError("tail must be from 1 to 10000", "VALIDATION_FAILED")
        try:
            result: dict[str, Any] = await fetch(inst.base_url, secret, req.tail)
        except Exception as exc:  # noqa: BLE001 - the host is remote: any failure is "unavailable"
            raise PoolError(f"the agent of {inst.id} did not answer: {type(exc).__name__}", "UNAVAILABLE") from None
        return result

    async def apply_policy(self, req: api.PolicyRequest) -> dict[str, Any]:
        """Apply a warm-pool policy (an event on the config aggregate, so it is audited)."""
        view = self.writer.view
        name = None
        if req.policy is not None:
            try:
                name = describe_policy(req.policy)
            except ValueError as exc:
                raise PoolError(str(exc), "VALIDATION_FAILED") from None
        await self.writer.config([ev.PolicyApplied(pool_id=view.pool_id, policy=req.policy, reason=req.reason)],
                                 meta_of(req))
        return {"policy": msgspec.to_builtins(req.policy), "name": name}

    async def status(self, req: api.StatusRequest) -> dict[str, Any]:
        """The pool as the dashboard shows it."""
        return summary(self.writer.view, self.clock())


def summary(view: v.PoolView, now: datetime) -> dict[str, Any]:
    """A JSON-ready picture of the pool: instances with costs, config, spend."""
    instances = []
    for inst in sorted(view.instances.values(), key=lambda i: i.requested_at or i.rented_at or now):
        costs = accrued(inst, now)
        instances.append({
            "id": inst.id, "state": inst.phase, "status_message": inst.status_msg,
            "provider_id": inst.provider_id, "gpu": inst.offer.gpu_name if inst.offer else None,
            "host_id": inst.offer.host_id if inst.offer else None, "dph": inst.dph,
            "uptime_s": (now - inst.rented_at).total_seconds() if inst.rented_at and not inst.terminated_at else 0.0,
            "accrued_cost": round(sum(costs.values()), 6), "cost_by_state": costs,
            "cost_bucket": cost_bucket(inst), "lease_holder": inst.lease.holder if inst.lease else None,
            "lease_expires_at": inst.lease.expires_at if inst.lease else None, "models": list(inst.models),
            "base_url": inst.base_url, "termination_reason": inst.terminate_reason, "failure": inst.failure,
            "provider": inst.provider, "ssh_host": inst.ssh_host or None, "ssh_port": inst.ssh_port or None,
            "agent": {"phase": inst.agent_phase or None, "reason": inst.agent_reason, "bytes_done": inst.bytes_done,
                      "bytes_total": inst.bytes_total, "comfyui_version": inst.comfyui_version or None},
            "last_probe_error": inst.probe_error or None,
            "logs_url": f"/api/v1/pool/instances/{inst.id}/logs",
        })
    return {
        "pool_id": view.pool_id, "config": msgspec.to_builtins(view.config), "safe_mode": view.safe_mode,
        "safe_mode_reason": view.safe_mode_reason, "instances": msgspec.to_builtins(instances),
        "spend_rate_dph": round(v.spend_rate(view), 6), "spend_today": round(v.spend_today(view, now), 6),
        "cost_by_state": v.cost_by_state(view, now),
        "avoided_hosts": sorted({p.host_id for p in view.penalties.values() if p.until > now}),
        "problems": [msgspec.to_builtins(p) for p in sorted(view.problems.values(), key=lambda p: p.since)],
        "seq": view.seq,
        "policy": msgspec.to_builtins(view.policy),
        "policy_decisions": [{"at": at, "policy": d.policy, "keep": d.keep, "idle_timeout_s": d.idle_timeout_s,
                              "reason": d.reason} for at, d in reversed(view.decisions)],
    }
