"""In-memory Vast-like marketplace: offers, rentals, billing and the fault model. No I/O."""

from __future__ import annotations

import random
import secrets
from dataclasses import dataclass, replace
from typing import Any

from services.pool.sim.clock import Clock
from services.pool.sim.config import ForcedFaults, SimConfig
from services.pool.sim.instance import (
    COMFY_PORT, CreateRequest, Instance, container_ports, instance_row, requested_models,
)
from services.pool.sim.lifecycle import draw_timeline, jittered, log_lines
from services.pool.sim.offers import (
    HOURS_PER_MONTH, Host, QueryError, generate_offers, matches, parse_order, price_offer, sort_rows,
)

FIRST_INSTANCE_ID = 27_000_001


class MarketError(Exception):
    """A refused Vast API call: HTTP status, Vast ``error`` code and human ``msg``."""

    def __init__(self, status: int, error: str, msg: str) -> None:
        super().__init__(msg)
        self.status, self.error, self.msg = status, error, msg


@dataclass(frozen=True)
class HostSpec:
    """What the server must run for a rental whose container is up: its ComfyUI host."""

    instance_id: int
    generation: int
    ready_at: float
    models: tuple[tuple[str, str, float], ...]  # (folder, file name, available at)
    gpu_name: str = "RTX 4090"
    gpu_ram_mb: int = 24564
    num_gpus: int = 1
    secret: str = ""  # STOKER_INSTANCE_SECRET the pool put in the rental's env ("": the agent lets nobody in)
    disk_gb: float = 10.0


class Market:
    """All marketplace state, driven by an injected clock and a seeded RNG."""

    def __init__(self, config: SimConfig, clock: Clock) -> None:
        self.clock = clock
        self.config = config
        self.reset(config)

    def reset(self, config: SimConfig | None = None) -> None:
        """Forget every rental and rebuild the offer catalogue from the seed."""
        if config is not None:
            self.config = config
        cfg = self.config
        offers, hosts = generate_offers(cfg.seed, cfg.offer_count, cfg.bad_host_fraction)
        self._offers: dict[int, dict[str, Any]] = {o["id"]: o for o in offers}
        self.hosts: dict[int, Host] = hosts
        self._taken: dict[int, int] = {}  # offer id -> instance id
        self._dead_machines: set[int] = set()
        self.instances: dict[int, Instance] = {}
        self._next_id = FIRST_INSTANCE_ID
        self._rng = random.Random(cfg.seed)
        self._request_rng = random.Random(cfg.seed * 7919 + 1)
        self._burst_left = 0
        self.forced = ForcedFaults()

    # offers -----------------------------------------------------------------
    def _offer_view(self, base: dict[str, Any], storage: float, kind: str) -> dict[str, Any]:
        row = price_offer(base, storage, kind, self.clock.now())
        if base["id"] in self._taken:
            row["rented"], row["rentable"] = True, False
        return row

    def live_offers(self) -> list[dict[str, Any]]:
        """Offers whose machine is still alive (rented or not)."""
        self._settle_vanished()
        return [o for o in self._offers.values() if o["machine_id"] not in self._dead_machines]

    def search(self, query: dict[str, Any]) -> list[dict[str, Any]]:
        """Offers matching a Vast search query (filters + order/type/limit/allocated_storage)."""
        try:
            storage = float(query.get("allocated_storage") or 5.0)
        except (TypeError, ValueError) as exc:
            raise QueryError("allocated_storage must be a number") from exc
        kind = str(query.get("type") or "on-demand")
        if kind == "interruptible":
            kind = "bid"
        rows = [self._offer_view(o, storage, kind) for o in self.live_offers()]
        rows = [r for r in rows if matches(r, query)]
        rows = sort_rows(sorted(rows, key=lambda r: r["id"]), parse_order(query.get("order") or [["score", "desc"]]))
        limit = query.get("limit")
        if limit is not None:
            try:
                rows = rows[:max(0, int(limit))]
            except (TypeError, ValueError) as exc:
                raise QueryError("limit must be an integer") from exc
        return rows

    def is_taken(self, offer_id: int) -> bool:
        """True while one of our rentals holds this offer."""
        return offer_id in self._taken

    def gpu_names(self) -> list[str]:
        """Distinct GPU names on offer."""
        return sorted({o["gpu_name"] for o in self._offers.values()})

    # rentals ----------------------------------------------------------------
    def _take_forced(self, name: str) -> bool:
        left = getattr(self.forced, name)
        if left > 0:
            setattr(self.forced, name, left - 1)
            return True
        return False

    def credit(self) -> float:
        """Account credit left: initial credit minus everything billed so far."""
        return self.config.initial_credit - self.total_billed()

    def create(self, offer_id: int, req: CreateRequest) -> Instance:
        """Rent ``offer_id``; raises MarketError when the offer can't be rented."""
        cfg, now = self.config, self.clock.now()
        base = self._offers.get(offer_id)
        if base is None or base["machine_id"] in self._dead_machines:
            raise MarketError(404, "no_such_ask", f"Instance type by id {offer_id} is not available.")
        if not base["rentable"] or offer_id in self._taken:
            raise MarketError(400, "no_such_ask", f"Instance type by id {offer_id} is not available.")
        if not req.image and not req.template_hash_id:
            raise MarketError(400, "invalid_args", "An image or a template_hash_id is required.")
        if self.credit() <= 0:
            raise MarketError(400, "insufficient_credit", "Your account lacks credit; see the billing page.")
        if self._take_forced("offer_races") or self._rng.random() < cfg.offer_race_rate:
            base["rentable"], base["rented"] = False, True  # someone else got it first
            raise MarketError(400, "no_such_ask", f"Instance type by id {offer_id} is not available.")
        host = self.hosts[base["host_id"]]
        fail_rate = cfg.bad_host_extraction_failure_rate if host.bad else cfg.extraction_failure_rate
        fail = self._take_forced("extraction_failures") or self._rng.random() < fail_rate
        stuck = not fail and (self._take_forced("stuck_loadings") or self._rng.random() < cfg.stuck_loading_rate)
        timeline = draw_timeline(self._rng, cfg, now, fail=fail, stuck=stuck)
        kind = "bid" if req.price is not None else "on-demand"
        offer = price_offer(base, float(req.disk), kind, now)
        if req.price is not None:
            offer["dph_total"] = round(float(req.price) + base["storage_cost"] * req.disk / HOURS_PER_MONTH, 6)
        storage_dph = base["storage_cost"] * float(req.disk) / HOURS_PER_MONTH
        env = {str(k): str(v) for k, v in (req.env or {}).items()}
        inst = Instance(
            id=self._next_id, offer=offer, host_bad=host.bad, request=req, env=env,
            api_key=secrets.token_hex(32), timeline=timeline, visible_at=now + cfg.listing_lag,
            storage_dph=storage_dph, label=req.label, ssh_port=41000 + (self._next_id % 2000) * 10,
        )
        self._next_id += 1
        if cfg.bill_gpu_before_running:
            inst.rate_points = [(now, inst.dph_total)]
        else:
            inst.rate_points = [(now, storage_dph)]
            if timeline.running_at is not None:
                inst.rate_points.append((timeline.running_at, inst.dph_total))
        if timeline.running_at is not None and cfg.vanish_rate > 0:
            inst.vanish_at = timeline.running_at + self._rng.expovariate(cfg.vanish_rate / 3600.0)
        self.instances[inst.id] = inst
        self._taken[offer_id] = inst.id
        return inst

    def visible(self, instance_id: int) -> Instance | None:
        """The rental as the Vast API shows it: None when gone or not listed yet."""
        inst = self.instances.get(instance_id)
        now = self.clock.now()
        if inst is None or not inst.is_billing(now) or now < inst.visible_at:
            return None
        return inst

    def visible_instances(self) -> list[Instance]:
        """Every rental the list endpoint shows right now."""
        return [i for i in self.instances.values() if self.visible(i.id) is not None]

    def row(self, inst: Instance) -> dict[str, Any]:
        """The Vast API row of ``inst`` now."""
        return instance_row(inst, self.clock.now(), self.config.extraction_failure_status)

    def _alive(self, instance_id: int) -> Instance:
        inst = self.instances.get(instance_id)
        if inst is None or not inst.is_billing(self.clock.now()):
            raise MarketError(404, "no_such_instance", f"Instance {instance_id} not found.")
        return inst

    def set_state(self, instance_id: int, state: str) -> None:
        """Stop (``stopped``) or start (``running``) a rental."""
        inst, now = self._alive(instance_id), self.clock.now()
        if state == "stopped" and inst.stopped_at is None:
            inst.stopped_at = now
            inst.rate_points = [p for p in inst.rate_points if p[0] <= now] + [(now, inst.storage_dph)]
        elif state == "running" and inst.stopped_at is not None:
            t = inst.timeline
            if t.running_at is not None and inst.stopped_at >= t.running_at:
                resumed = now + jittered(self._rng, self.config.restart_seconds, self.config.timing_jitter)
                inst.timeline = replace(t, running_at=resumed)
            else:
                inst.timeline = t.shifted(now - inst.stopped_at)
            inst.stopped_at = None
            inst.generation += 1
            rate_before = inst.dph_total if self.config.bill_gpu_before_running else inst.storage_dph
            inst.rate_points.append((now, rate_before))
            if inst.timeline.running_at is not None and inst.timeline.running_at > now:
                inst.rate_points.append((inst.timeline.running_at, inst.dph_total))
        elif state not in ("stopped", "running"):
            raise MarketError(400, "invalid_args", f"Unknown state {state!r}.")

    def reboot(self, instance_id: int) -> None:
        """Restart the container of a running rental (ComfyUI boots again)."""
        inst = self._alive(instance_id)
        if inst.phase(self.clock.now()) == "running":
            self.set_state(instance_id, "stopped")
            self.set_state(instance_id, "running")

    def relabel(self, instance_id: int, label: str | None) -> None:
        """Set a rental's label."""
        self._alive(instance_id).label = label

    def destroy(self, instance_id: int) -> bool:
        """Destroy a rental; False when this DELETE was a zombie (answered success, did nothing)."""
        inst, now = self._alive(instance_id), self.clock.now()
        if inst.zombie_deletes == 0 and (
                self._take_forced("zombie_terminates")
                or self._request_rng.random() < self.config.zombie_terminate_rate):
            inst.zombie_deletes += 1
            return False
        inst.destroyed_at = now
        self._taken.pop(inst.offer["id"], None)
        return True

    def vanish(self, instance_id: int) -> None:
        """The rental's host dies now: gone from lists, billing stops, its machine leaves the market."""
        inst = self._alive(instance_id)
        inst.vanish_at = self.clock.now()
        self._settle_vanished()

    def _settle_vanished(self) -> None:
        now = self.clock.now()
        for inst in self.instances.values():
            if inst.vanish_at is not None and now >= inst.vanish_at and inst.destroyed_at is None:
                if self._taken.get(inst.offer["id"]) == inst.id:
                    del self._taken[inst.offer["id"]]
                    self._dead_machines.add(inst.offer["machine_id"])

    def arm_mid_job_death(self, instance_id: int) -> None:
        """Make the next ComfyUI job on this rental kill its host half-way."""
        self._alive(instance_id).mid_job_deaths_armed += 1

    def take_mid_job_death(self, instance_id: int) -> bool:
        """Decide (once per job) whether this job dies with its host."""
        inst = self.instances.get(instance_id)
        if inst is None:
            return False
        if inst.mid_job_deaths_armed > 0:
            inst.mid_job_deaths_armed -= 1
            return True
        return self._take_forced("mid_job_deaths") or self._request_rng.random() < self.config.vanish_mid_job_rate

    def rate_limited(self) -> float | None:
        """Retry-After seconds when this API request is throttled, else None."""
        cfg = self.config
        if self._take_forced("rate_limited_requests"):
            return cfg.rate_limit_retry_after
        if self._burst_left > 0:
            self._burst_left -= 1
            return cfg.rate_limit_retry_after
        if cfg.rate_limit_burst_rate > 0 and self._request_rng.random() < cfg.rate_limit_burst_rate:
            self._burst_left = max(0, cfg.rate_limit_burst_length - 1)
            return cfg.rate_limit_retry_after
        return None

    # hosts, billing, logs ---------------------------------------------------
    def wanted_hosts(self) -> dict[int, HostSpec]:
        """ComfyUI hosts that should be listening now (running rentals mapping port 8188)."""
        now, out = self.clock.now(), {}
        self._settle_vanished()
        for inst in self.instances.values():
            if inst.phase(now) != "running" or COMFY_PORT not in container_ports(inst.env):
                continue
            running_at = inst.timeline.running_at or now
            models = tuple((folder, name, running_at + (i + 1) * self.config.model_download_seconds)
                           for i, (folder, name) in enumerate(requested_models(inst.env, inst.request.onstart)))
            out[inst.id] = HostSpec(inst.id, inst.generation, inst.comfy_ready_at() or now, models,
                                    inst.offer["gpu_name"], inst.offer["gpu_ram"], inst.offer["num_gpus"],
                                    secret=inst.env.get("STOKER_INSTANCE_SECRET", ""),
                                    disk_gb=float(inst.request.disk))
        return out

    def set_host_port(self, instance_id: int, port: int | None) -> None:
        """Record where the rental's ComfyUI host listens (None: not listening)."""
        if instance_id in self.instances:
            self.instances[instance_id].host_port = port

    def total_billed(self) -> float:
        """Dollars billed over all rentals ever."""
        now = self.clock.now()
        return sum(i.billed(now) for i in self.instances.values())

    def billing_ids(self) -> list[int]:
        """Ids of rentals still accruing charges (including zombies and ones not listed yet)."""
        now = self.clock.now()
        return sorted(i.id for i in self.instances.values() if i.is_billing(now))

    def append_log(self, instance_id: int, line: str) -> None:
        """Add a line to a rental's container log."""
        if instance_id in self.instances:
            self.instances[instance_id].host_log.append((self.clock.now(), line))

    def log_text(self, instance_id: int, tail: int | None = None) -> str:
        """The rental's log as text, optionally only the last ``tail`` lines."""
        inst = self.instances[instance_id]
        lines = sorted(log_lines(inst.timeline, inst.image, self.clock.now()) + inst.host_log, key=lambda p: p[0])
        text = [line for _, line in lines]
        return "\n".join(text[-tail:] if tail else text) + "\n"
