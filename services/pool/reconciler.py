"""Carrying out a reconcile plan: append its events, call the provider, probe, rent."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Callable, Mapping
from datetime import datetime

from libs.events import NEW, ConcurrencyError, Metadata
from libs.events import pool as ev
from libs.observability import tracing

from . import planner
from . import view as v
from .instance import Instance
from .metrics import PoolMetrics
from .policies import live as policy_live
from .policy import INSTANCE_TOKEN_ENV
from .probe import ComfyProbe
from .providers.base import OfferUnavailable, Provider, ProviderError, ProviderInstance
from .reputation import avoided_hosts
from .status import label_for
from .writer import PoolWriter

log = logging.getLogger(__name__)
SYSTEM = Metadata(actor="pool")


def instance_env(secrets: Mapping[str, str], template: ev.InstanceTemplate) -> dict[str, str]:
    """Environment of a new instance: the template's model URLs and the tokens it names."""
    out = {name: secrets[name] for name in template.token_env if name in INSTANCE_TOKEN_ENV and secrets.get(name)}
    if template.models:
        out["STOKER_MODELS"] = ",".join(template.models)
    return out


def rental_id(pool_id: str, key: str) -> str:
    """The instance aggregate id for a rent with this idempotency key (same key, same id)."""
    return "r" + hashlib.sha256(f"{pool_id}\x00{key}".encode()).hexdigest()[:24]


class Reconciler:
    """Runs reconcile passes: plan from the view and the provider's list, then act."""

    def set_api_key(self, key: str) -> bool:
        """Change the provider's API key at runtime (never stored); False if it has none."""
        setter = getattr(self.provider, "set_api_key", None)
        if setter is None:
            return False
        setter(key)
        return True

    def __init__(self, writer: PoolWriter, provider: Provider, probe: ComfyProbe, *,
                 clock: Callable[[], datetime], settings: planner.Settings = planner.Settings(),
                 secrets: Mapping[str, str] | None = None, metrics: PoolMetrics | None = None) -> None:
        self.writer = writer
        self.metrics = metrics or PoolMetrics()
        self.provider = provider
        self.probe = probe
        self.clock = clock
        self.settings = settings
        self._secrets = dict(secrets or {})  # model tokens, by env name: only ever sent to the provider
        self.in_flight: set[str] = set()
        self._next_probe: dict[str, tuple[float, float]] = {}  # instance id -> (monotonic due, backoff)
        self.passes = 0
        self.last_error: str | None = None

    async def run_once(self) -> planner.Plan:
        """One full pass."""
        try:
            listed: list[ProviderInstance] | None = await self.provider.list_instances()
        except ProviderError as exc:
            self.last_error = f"listing failed: {exc}"
            log.warning("reconcile: cannot list instances (%s); acting on what is safe", exc)
            listed = None
        view = self.writer.view
        target, decided = policy_live.decide(view, self.clock())
        if decided:
            await self._safe(self.writer.config(decided, SYSTEM))
            view = self.writer.view
        plan = planner.plan(view, listed, self.clock(), settings=self.settings,
                            in_flight=frozenset(self.in_flight), target=target)
        await self._apply(view, plan)
        self.passes += 1
        return plan

    async def _apply(self, view: v.PoolView, plan: planner.Plan) -> None:
        if plan.config_events:
            await self._safe(self.writer.config(plan.config_events, SYSTEM))
        for instance_id, events in plan.events.items():
            inst = view.instances[instance_id]
            await self._safe(self.writer.instance(instance_id, events, inst.position, SYSTEM))
        for p in plan.orphans:
            await self._adopt_orphan(view.pool_id, p)
        await asyncio.gather(*(self._destroy(i) for i in plan.destroy),
                             *(self._confirm_gone(i) for i in plan.confirm_gone),
                             *(self._probe(i) for i in plan.probe))
        if plan.rent:
            await self.rent(plan.rent, key=f"reconcile:{view.seq}", meta=SYSTEM)

    async def _safe(self, write: object) -> None:
        try:
            await write  # type: ignore[misc]
        except ConcurrencyError as exc:
            log.info("reconcile: %s changed meanwhile; next pass decides again", exc.subject)

    async def _adopt_orphan(self, pool_id: str, p: ProviderInstance) -> None:
        instance_id = f"orphan-{p.provider_id}"
        existing = self.writer.view.instances.get(instance_id)
        if existing is not None and existing.phase == "terminating":
            return
        log.warning("orphan instance %s (%s) found at the provider: terminating it", p.provider_id, p.label)
        event = ev.OrphanFound(pool_id=pool_id, provider=self.provider.name, provider_id=p.provider_id,
                               label=p.label or "", dph=p.dph)
        await self._safe(self.writer.instance(instance_id, [event], existing.position if existing else NEW, SYSTEM))
        await self._destroy_id(p.provider_id)

    async def _destroy(self, inst: Instance) -> None:
        if inst.provider_id:
            await self._destroy_id(inst.provider_id)

    async def _destroy_id(self, provider_id: str) -> None:
        try:
            await self.provider.destroy_instance(provider_id)
        except ProviderError as exc:
            log.warning("destroy of %s failed (%s); retrying next pass", provider_id, exc)

    async def _confirm_gone(self, inst: Instance) -> None:
        """Terminated only once the provider itself says the instance is gone."""
        try:
            shown = await self.provider.show_instance(inst.provider_id)
        except ProviderError as exc:
            log.warning("cannot confirm %s is gone (%s)", inst.provider_id, exc)
            return
        if shown is not None:
            if inst.phase == "terminating":
                await self._destroy(inst)
            return
        reason: ev.TerminationReason = "provider_lost"
        if inst.phase == "terminating" and inst.terminate_reason:
            reason = inst.terminate_reason  # type: ignore[assignment]
        else:
            log.warning("instance %s (%s) vanished at the provider", inst.id, inst.provider_id)
        await self._safe(self.writer.instance(inst.id, [ev.Terminated(
            pool_id=inst.pool_id, reason=reason, provider_id=inst.provider_id)], inst.position, SYSTEM))

    async def _probe(self, inst: Instance) -> None:
        now = time.monotonic()
        due, backoff = self._next_probe.get(inst.id, (0.0, 0.0))
        if now < due or not inst.base_url:
            return
        readiness = self.writer.view.config.readiness
        with tracing.span("pool", "pool.probe", attributes={"stoker.instance_id": inst.id}) as span:
            result = await self.probe.probe(inst.base_url, readiness)
            span.set_attributes({"stoker.ready": result.ready, "stoker.detail": result.detail})
        if not result.ready:
            backoff = min(max(backoff * 2, readiness.probe_initial_backoff_s), readiness.probe_max_backoff_s)
            self._next_probe[inst.id] = (time.monotonic() + backoff, backoff)
            if result.detail and result.detail != inst.status_msg:
                log.debug("probe %s: %s", inst.id, result.detail)
            return
        self._next_probe.pop(inst.id, None)
        await self._safe(self.writer.instance(inst.id, [ev.Ready(pool_id=inst.pool_id, base_url=inst.base_url,
                                                                 models=result.models)], inst.position, SYSTEM))

    async def rent(self, count: int, *, key: str, meta: Metadata) -> list[str]:
        """Rent ``count`` instances; the same ``key`` never rents twice. Returns instance ids."""
        view = self.writer.view
        cfg = view.config
        ids = [rental_id(view.pool_id, f"{key}:{n}") for n in range(count)]
        wanted = [i for i in ids if i not in view.instances]
        if not wanted or view.safe_mode:
            return ids
        used_machines = {i.offer.machine_id for i in v.live(view) if i.offer}
        try:
            offers = await self.provider.search_offers(cfg.offer_filter, limit=len(wanted) + len(used_machines) + 10,
                                                       exclude_hosts=avoided_hosts(view.penalties, self.clock()))
        except ProviderError as exc:
            log.warning("offer search failed: %s", exc)
            self.last_error = f"offer search failed: {exc}"
            return ids
        offers = [o for o in offers if o.machine_id not in used_machines]
        await asyncio.gather(*(self._rent_one(instance_id, offers, meta) for instance_id in wanted))
        return ids

    async def _rent_one(self, instance_id: str, offers: list[ev.Offer], meta: Metadata) -> None:
        caps = self.writer.view.config.spend_caps
        while offers:
            offer = offers.pop(0)
            if caps.max_dph is not None and v.spend_rate(self.writer.view) + offer.dph > caps.max_dph:
                continue
            self.in_flight.add(instance_id)
            try:
                outcome = await self._try_offer(instance_id, offer, meta)
            finally:
                self.in_flight.discard(instance_id)
            self.metrics.rentals.inc(outcome=outcome)
            if outcome != "offer_gone":
                return
            instance_id = rental_id(self.writer.view.pool_id, f"retry:{instance_id}")

    async def _try_offer(self, instance_id: str, offer: ev.Offer, meta: Metadata) -> str:
        """Request, rent and record one offer: "rented", "offer_gone", "duplicate" or "unknown"."""
        view = self.writer.view
        label = label_for(view.pool_id, instance_id)
        requested = ev.RentRequested(pool_id=view.pool_id, idempotency_key=instance_id, offer=offer,
                                     provider=self.provider.name, label=label)
        try:
            recorded = await self.writer.instance(instance_id, [requested], NEW, meta)
        except ConcurrencyError:
            return "duplicate"  # this rental was already requested (a retry): never rent twice
        position = (recorded[-1].envelope.aggregate_version, recorded[-1].seq)
        try:
            provider_id = await self.provider.create_instance(offer, view.config.template, label=label,
                                                              env=instance_env(self._secrets, view.config.template))
        except ProviderError as exc:
            if exc.retryable:
                # Unknown outcome: the reconciler adopts it by label, or gives it up after a grace.
                log.warning("rent of offer %s: %s (outcome unknown)", offer.offer_id, exc)
                return "unknown"
            await self._safe(self.writer.instance(instance_id, [ev.RentFailed(
                pool_id=view.pool_id, message=str(exc))], position, meta))
            return "offer_gone" if isinstance(exc, OfferUnavailable) else "refused"
        await self._safe(self.writer.instance(instance_id, [ev.InstanceRented(
            pool_id=view.pool_id, provider=self.provider.name, provider_id=provider_id, offer=offer,
            dph=offer.dph, label=label)], position, meta))
        return "rented"
