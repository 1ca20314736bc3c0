"""Replay a demand trace against a policy on a virtual clock, through the REAL planner and fold.

The pool's state is a ``PoolView`` built only by ``view.project`` from the same events the live
pool writes; each reconcile pass is ``planner.plan`` with the policy's target; claims and releases
are ``instance.decide_claim``/``decide_release``. Only the outside world is modelled: the provider
(a rental boots in a drawn time, or fails), and the jobs (claim when an instance is free, hold it
for ``gpu_s``). Jobs that wait make the pool rent like the generation service's autoscale does.
"""

from __future__ import annotations

import heapq
import random
from collections import deque
from datetime import datetime, timezone

import msgspec

from libs.events import Envelope, Recorded
from libs.events import pool as ev
from libs.events.base import Event

from .. import planner
from .. import view as v
from ..instance import accrued, decide_claim, decide_release
from ..policy import MAX_SECONDS
from ..providers.base import ProviderInstance
from ..status import label_for
from .base import Decision, Observation, Policy, quantile
from .catalog import make
from .model import BootModel
from .queue import rent_for_queue
from .trace import Job

POOL = "sim"
SETTINGS = planner.Settings(listing_grace_s=60.0, rent_grace_s=120.0)
BUCKETS = {"idle": "idle", "busy": "busy"}  # every other cost bucket is booting (incl. failed boots)


class Result(msgspec.Struct, kw_only=True):
    """One policy on one trace."""

    policy: str
    total: float
    by_state: dict[str, float]
    jobs: int
    cold_waits: int
    p50: float
    p95: float
    p99: float
    max_instances: int
    rentals: int
    failed_rentals: int
    waits: list[float] = []
    timeline: list[tuple[float, int, int, float]] = []  # (t, demand, live instances, cost so far)
    decisions: list[tuple[float, int, str]] = []  # (t, keep, reason), when the decision changed
    rents: list[float] = []  # times of RentRequested
    ends: list[float] = []  # times of Terminated / RentFailed


def _dt(t: float) -> datetime:
    return datetime.fromtimestamp(t, timezone.utc)


class _World:
    """The pool under simulation: a view folded from events, a modelled provider, the job queue."""

    def __init__(self, policy: Policy, model: BootModel, *, max_size: int, min_size: int, start: float,
                 settings: planner.Settings = SETTINGS) -> None:
        self.policy, self.model, self.settings = policy, model, settings
        self.rng = random.Random(model.seed)
        self.view = v.PoolView(pool_id=POOL)
        self.seq = 0
        self.versions: dict[str, int] = {}
        self.provider: dict[str, tuple[float, bool]] = {}  # listed provider id -> (boot done at, fails)
        self.rented = 0
        self.queue: deque[tuple[Job, float]] = deque()
        self.releases: list[tuple[float, str, str]] = []  # heap of (at, instance id, lease id)
        self.waits: list[float] = []
        self.counted: dict[str, float] = {}
        self.by_state: dict[str, float] = {"booting": 0.0, "idle": 0.0, "busy": 0.0}
        self.boots: list[float] = []
        self.decision: Decision | None = None
        self.result_decisions: list[tuple[float, int, str]] = []
        self.rents: list[float] = []
        self.ends: list[float] = []
        self.failed = 0
        self.last_activity: float | None = None
        self._by_pid: dict[str, str] = {}
        cfg = ev.PoolConfig(min_size=min_size, max_size=max_size, lease_max_s=MAX_SECONDS)
        self.emit(ev.CONFIG, POOL, [ev.PoolConfigured(pool_id=POOL, config=cfg)], start)

    # --- events -------------------------------------------------------------------
    def emit(self, agg_type: str, agg_id: str, events: list[Event], t: float) -> None:
        for event in events:
            self.seq += 1
            version = self.versions[agg_id] = self.versions.get(agg_id, 0) + 1
            env = Envelope(id=f"e{self.seq}", schema=1, aggregate_type=agg_type, aggregate_id=agg_id,
                           aggregate_version=version, occurred_at=_dt(t), actor="pool", event=event)
            self.view = v.project(self.view, Recorded("SIM", f"ev.pool.{agg_type}.{agg_id}", self.seq, env))
            if isinstance(event, ev.Terminated | ev.RentFailed):
                self.ends.append(t)
                inst = self.view.instances.get(agg_id)
                if inst is not None and agg_id not in self.counted:
                    self._count(agg_id, inst.cost_by_phase)
            elif isinstance(event, ev.Ready):
                inst = self.view.instances[agg_id]
                if inst.rented_at is not None:
                    self.boots.append(t - inst.rented_at.timestamp())

    def _count(self, iid: str, costs: dict[str, float]) -> None:
        self.counted[iid] = sum(costs.values())
        for bucket, amount in costs.items():
            key = BUCKETS.get(bucket, "booting")
            self.by_state[key] += amount

    # --- the modelled provider ------------------------------------------------------
    def listed(self, t: float) -> list[ProviderInstance]:
        out = []
        for pid, (done_at, fails) in self.provider.items():
            inst_id = self._by_pid.get(pid, "")
            if t < done_at:
                status, msg, url = "loading", "pulling image", None
            elif fails:
                status, msg, url = "exited", "error extracting layer: no space left on device", None
            else:
                status, msg, url = "running", "running", f"http://sim/{pid}"
            out.append(ProviderInstance(provider_id=pid, label=label_for(POOL, inst_id), actual_status=status,
                                        status_msg=msg, host_id=f"h{pid}", machine_id=f"m{pid}",
                                        dph=self.model.dph, comfy_url=url))
        return out

    def rent(self, count: int, t: float) -> None:
        for _ in range(count):
            self.rented += 1
            n = self.rented
            iid, pid = f"r{n}", str(n)
            offer = ev.Offer(offer_id=f"o{n}", gpu_name="RTX 4090", dph=self.model.dph, host_id=f"h{pid}",
                             machine_id=f"m{pid}")
            label = label_for(POOL, iid)
            boot, fails = self.model.draw(self.rng)
            self.failed += fails
            self.provider[pid] = (t + boot, fails)
            self._by_pid[pid] = iid
            self.rents.append(t)
            self.emit(ev.INSTANCE, iid, [
                ev.RentRequested(pool_id=POOL, idempotency_key=iid, offer=offer, provider="sim", label=label),
                ev.InstanceRented(pool_id=POOL, provider="sim", provider_id=pid, offer=offer, dph=offer.dph,
                                  label=label)], t)

    # --- one reconcile pass -----------------------------------------------------------
    def observation(self, t: float) -> Observation:
        live = v.live(self.view)
        boot = sorted(self.boots[-50:])
        return Observation(now=t, live=len(live), busy=sum(1 for i in live if i.phase == "claimed"),
                           waiting=len(self.queue), last_activity=self.last_activity,
                           boot_s=quantile(boot, 0.5) if boot else (self.model.boot_min_s + self.model.boot_max_s) / 2)

    def decide(self, t: float) -> Decision:
        decision = self.policy.decide(self.observation(t))
        prev = self.decision
        if prev is None or (prev.keep, prev.idle_timeout_s) != (decision.keep, decision.idle_timeout_s):
            self.result_decisions.append((t, decision.keep, decision.reason))
        self.decision = decision
        return decision

    def reconcile(self, t: float) -> None:
        """Passes at time ``t`` until nothing more happens (at most 8)."""
        for _ in range(8):
            busy = self.assign(t)  # claims come first: live, a job claims the moment it arrives
            decision = self.decide(t)
            target = planner.Target(keep=decision.keep, idle_timeout_s=decision.idle_timeout_s)
            plan = planner.plan(self.view, self.listed(t), _dt(t), settings=self.settings, target=target)
            busy |= bool(plan.events or plan.destroy or plan.confirm_gone or plan.probe or plan.rent)
            for iid, events in plan.events.items():
                self.emit(ev.INSTANCE, iid, events, t)
            for inst in plan.destroy:
                self.provider.pop(inst.provider_id, None)  # gone: no longer listed, nothing bills
            for inst in plan.confirm_gone:
                if inst.provider_id not in self.provider:
                    reason = inst.terminate_reason or "provider_lost"
                    self.emit(ev.INSTANCE, inst.id, [ev.Terminated(pool_id=POOL, reason=reason,  # type: ignore[arg-type]
                                                                   provider_id=inst.provider_id)], t)
            for inst in plan.probe:
                self.emit(ev.INSTANCE, inst.id, [ev.Ready(pool_id=POOL, base_url=inst.base_url or "")], t)
            if plan.rent:
                self.rent(plan.rent, t)
            busy |= self.autoscale(t, decision)
            busy |= self.assign(t)
            if not busy:
                return

    def autoscale(self, t: float, decision: Decision) -> bool:
        """Rent for waiting jobs like the generation service does (within max_size)."""
        waiting = len(self.queue)
        if not waiting or self.view.safe_mode:
            return False
        live = v.live(self.view)
        coming = sum(1 for i in live if i.phase in ("renting", "loading", "ready"))
        want = rent_for_queue(waiting=waiting, live=len(live), coming=coming, max_size=self.view.config.max_size,
                              mean_gpu_s=self.policy_mean(), queue_wait_s=decision.queue_wait_s)
        if want:
            self.rent(want, t)
        return bool(want)

    def policy_mean(self) -> float:
        history = getattr(self.policy, "history", None)
        return history.mean_gpu_s() if history is not None else 60.0

    def assign(self, t: float) -> bool:
        """Waiting jobs claim free Ready instances, first come first served."""
        changed = False
        while self.queue:
            ready = [i for i in self.view.instances.values() if i.phase == "ready"]
            if not ready:
                break
            job, arrived = self.queue.popleft()
            inst = min(ready, key=lambda i: i.id)
            lease = f"l{self.seq}"
            self.emit(ev.INSTANCE, inst.id, decide_claim(inst, lease_id=lease, holder="sim", lease_s=MAX_SECONDS,
                                                         lease_max_s=MAX_SECONDS, checkpoint=None, now=_dt(t)), t)
            heapq.heappush(self.releases, (t + job.gpu_s, inst.id, lease))
            self.waits.append(t - arrived)
            changed = True
        return changed

    def release_due(self, t: float) -> None:
        while self.releases and self.releases[0][0] <= t:
            _, iid, lease = heapq.heappop(self.releases)
            self.emit(ev.INSTANCE, iid, decide_release(self.view.instances[iid], lease), t)
            self.last_activity = t

    def next_wakeup(self, t: float) -> float:
        """The next time something may change without an arrival."""
        candidates = [t + 900.0]
        if self.releases:
            candidates.append(self.releases[0][0])
        candidates += [done for done, _ in self.provider.values() if done > t]
        if self.decision is not None:
            if self.decision.recheck_s is not None:
                candidates.append(t + max(1.0, self.decision.recheck_s))
            for i in self.view.instances.values():
                if i.phase == "ready" and i.last_used_at is not None:
                    candidates.append(i.last_used_at.timestamp() + self.decision.idle_timeout_s)
        later = [c for c in candidates if c > t]
        return min(later) if later else t + 900.0


def simulate(jobs: list[Job], spec: ev.PolicySpec, model: BootModel = BootModel(), *, max_size: int = 8,
             min_size: int = 0, sample_s: float = 900.0, settings: planner.Settings = SETTINGS) -> Result:
    """Run ``jobs`` (sorted by arrival) through the pool under ``spec``; costs are billed until the
    last job ends (what is still running then is cut off there, for every policy alike)."""
    policy = make(spec)
    start = jobs[0].arrival - 1.0
    w = _World(policy, model, max_size=max_size, min_size=min_size, start=start, settings=settings)
    t, i, n = start, 0, len(jobs)
    timeline: list[tuple[float, int, int, float]] = []
    next_sample = start
    max_live = 0
    while True:
        w.release_due(t)
        while i < n and jobs[i].arrival <= t:
            w.queue.append((jobs[i], jobs[i].arrival))
            policy.observe(jobs[i].arrival, jobs[i].gpu_s)
            w.last_activity = jobs[i].arrival
            i += 1
        w.reconcile(t)
        live = v.live(w.view)
        max_live = max(max_live, len(live))
        if t >= next_sample:
            demand = len(w.queue) + sum(1 for x in live if x.phase == "claimed")
            timeline.append((t, demand, len(live), _cost_so_far(w, t)))
            next_sample = t + sample_s
        if i >= n and not w.queue and not w.releases:
            break
        nxt = w.next_wakeup(t)
        if i < n:
            nxt = min(nxt, jobs[i].arrival)
        t = max(nxt, t + 0.001)
    end = t
    for iid, inst in w.view.instances.items():
        if iid not in w.counted:
            w._count(iid, accrued(inst, _dt(end)))
    timeline.append((end, 0, len(v.live(w.view)), _cost_so_far(w, end)))
    waits = sorted(w.waits)
    return Result(policy=policy.name, total=sum(w.by_state.values()), by_state=dict(w.by_state), jobs=len(waits),
                  cold_waits=sum(1 for x in waits if x > 1.0), p50=quantile(waits, 0.5), p95=quantile(waits, 0.95),
                  p99=quantile(waits, 0.99), max_instances=max_live, rentals=w.rented, failed_rentals=w.failed,
                  waits=w.waits, timeline=timeline, decisions=w.result_decisions, rents=w.rents, ends=w.ends)


def _cost_so_far(w: _World, t: float) -> float:
    done = sum(w.counted.values())
    running = sum(sum(accrued(i, _dt(t)).values()) for iid, i in w.view.instances.items() if iid not in w.counted)
    return done + running
