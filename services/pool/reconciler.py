"""Carrying out a reconcile plan: append its events, call the provider, probe, rent."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Callable, Mapping
from datetime import datetime

import msgspec

from libs.events import NEW, ConcurrencyError, Metadata
from libs.events import pool as ev
from libs.events.base import Event
from libs.observability import tracing

from . import planner, problems
from . import view as v
from .agent_report import report_of
from .host_secrets import SECRET_ENV, HostSecrets
from .instance import Instance, decide_terminate
from .metrics import PoolMetrics
from .policy import INSTANCE_TOKEN_ENV
from .probe import ComfyProbe
from .providers.base import OfferUnavailable, Provider, ProviderError, ProviderInstance
from .reputation import avoided_hosts
from .status import label_for
from .writer import PoolWriter

log = logging.getLogger(__name__)
AGENT_VERSION = "0.1.0"  # the agent a rented host installs when STOKER_AGENT_PACKAGE does not say otherwise
SYSTEM = Metadata(actor="pool")


def instance_env(secrets: Mapping[str, str], template: ev.InstanceTemplate,
                 instance_secret: str | None = None) -> dict[str, str]:
    """Environment of a new instance: the template's model URLs, the tokens it names, its instance secret."""
    out = {name: secrets[name] for name in template.token_env if name in INSTANCE_TOKEN_ENV and secrets.get(name)}
    if template.models:
        out["STOKER_MODELS"] = ",".join(template.models)
    if instance_secret:
        out[SECRET_ENV] = instance_secret
        out["STOKER_AGENT_PACKAGE"] = secrets.get("STOKER_AGENT_PACKAGE") or f"stoker=={AGENT_VERSION}"
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
                 secrets: Mapping[str, str] | None = None, metrics: PoolMetrics | None = None,
                 host_secrets: HostSecrets | None = None) -> None:
        self.writer = writer
        self.metrics = metrics or PoolMetrics()
        self.provider = provider
        self.probe = probe
        self.clock = clock
        self.settings = settings
        self._secrets = dict(secrets or {})  # model tokens, by env name: only ever sent to the provider
        self.host_secrets = host_secrets  # None: hosts run no agent (plain ComfyUI, e.g. static hosts)
        self.in_flight: set[str] = set()
        self._next_probe: dict[str, tuple[float, float]] = {}  # instance id -> (monotonic due, backoff)
        self.passes = 0
        self.last_error: str | None = None
        self._found: dict[str, str] = {}  # problems seen since the last flush, by code
        self._checked: set[str] = set()  # problem codes looked at since the last flush
        self._listing_failures = 0  # consecutive passes whose listing failed

    def _problem(self, code: str, message: str | None, *, checked: tuple[str, ...] = ()) -> None:
        self._checked.update(checked or (code,))
        if message is not None:
            self._found[code] = message

    async def _flush_problems(self) -> None:
        view = self.writer.view
        events = problems.changes(view.pool_id, view.problems, self._found, self._checked)
        self._found, self._checked = {}, set()
        if events:
            for e in events:
                log.warning("pool problem %s: %s", type(e).__name__, getattr(e, "message", getattr(e, "code", "")))
            await self._safe(self.writer.config(events, SYSTEM))

    async def run_once(self) -> planner.Plan:
        """One full pass."""
        try:
            listed: list[ProviderInstance] | None = await self.provider.list_instances()
        except ProviderError as exc:
            self.last_error = f"listing failed: {exc}"
            log.warning("reconcile: cannot list instances (%s); acting on what is safe", exc)
            listed = None
            self._listing_failures += 1
            code, message = problems.from_provider_error(exc, "listing instances")
            if code == problems.PROVIDER_AUTH or self._listing_failures >= problems.UNREACHABLE_AFTER:
                self._problem(code, message, checked=problems.LISTING)  # a blip is not a problem yet
        else:
            self._listing_failures = 0
            self._problem(problems.PROVIDER_AUTH, None, checked=problems.LISTING)
        view = self.writer.view
        plan = planner.plan(view, listed, self.clock(), settings=self.settings,
                            in_flight=frozenset(self.in_flight))
        await self._apply(view, plan)
        if listed is not None and plan.rent == 0 and not self._checked & set(problems.RENTING) \
                and not self.in_flight:
            self._checked.update(problems.RENTING)  # nothing to rent: no renting problem stands
        await self._flush_problems()
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

    def secret_for(self, instance_id: str) -> str | None:
        """The instance secret of a host that runs the agent (None: no agent, nothing to send).

        A joined box (provider ``agents``) keeps the secret it got when it joined: ``node:<node id>``.
        """
        if self.host_secrets is None:
            return None
        inst = self.writer.view.instances.get(instance_id)
        if inst is not None and inst.provider == "agents" and inst.provider_id:
            return self.host_secrets.for_instance(f"node:{inst.provider_id}")
        return self.host_secrets.for_instance(instance_id)

    def _provider_name(self, offer_id: str) -> str:
        name_for = getattr(self.provider, "name_for", None)
        return name_for(offer_id) if name_for is not None else self.provider.name

    async def _probe(self, inst: Instance) -> None:
        now = time.monotonic()
        due, backoff = self._next_probe.get(inst.id, (0.0, 0.0))
        if now < due or not inst.base_url:
            return
        readiness = self.writer.view.config.readiness
        with tracing.span("pool", "pool.probe", attributes={"stoker.instance_id": inst.id}) as span:
            result = await self.probe.probe(inst.base_url, readiness, self.secret_for(inst.id))
            span.set_attributes({"stoker.ready": result.ready, "stoker.detail": result.detail})
        current = self.writer.view.instances.get(inst.id)
        if current is None or current.phase != "loading":
            return  # changed while we probed: the next pass decides again
        inst = msgspec.structs.replace(current, base_url=inst.base_url)  # this pass may have appended events
        events: list[Event] = []
        report = report_of(inst, result)
        if report is not None:
            events.append(report)
        if result.agent is not None and result.agent.phase == "failed":
            log.warning("agent on %s failed: %s", inst.id, result.agent.reason)
            events += decide_terminate(inst, "agent_failed", result.agent.reason)
            try:
                await self.writer.instance(inst.id, events, inst.position, SYSTEM)
            except ConcurrencyError:
                return  # the next pass probes again
            await self._destroy(inst)
            return
        if not result.ready:
            backoff = min(max(backoff * 2, readiness.probe_initial_backoff_s), readiness.probe_max_backoff_s)
            self._next_probe[inst.id] = (time.monotonic() + backoff, backoff)
            if result.detail and result.detail != inst.status_msg:
                log.debug("probe %s: %s", inst.id, result.detail)
            if events:
                await self._safe(self.writer.instance(inst.id, events, inst.position, SYSTEM))
            return
        self._next_probe.pop(inst.id, None)
        events.append(ev.Ready(pool_id=inst.pool_id, base_url=inst.base_url, models=result.models))
        await self._safe(self.writer.instance(inst.id, events, inst.position, SYSTEM))

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
            self._problem(*problems.from_provider_error(exc, "searching offers"), checked=problems.LISTING)
            return ids
        offers = [o for o in offers if o.machine_id not in used_machines]
        self._problem(problems.NO_OFFERS, None if offers else problems.no_offers_message(cfg.offer_filter))
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
        provider_name = self._provider_name(offer.offer_id)
        requested = ev.RentRequested(pool_id=view.pool_id, idempotency_key=instance_id, offer=offer,
                                     provider=provider_name, label=label)
        try:
            recorded = await self.writer.instance(instance_id, [requested], NEW, meta)
        except ConcurrencyError:
            return "duplicate"  # this rental was already requested (a retry): never rent twice
        position = (recorded[-1].envelope.aggregate_version, recorded[-1].seq)
        try:
            provider_id = await self.provider.create_instance(offer, view.config.template, label=label,
                                                              env=instance_env(self._secrets, view.config.template,
                                                                               self.secret_for(instance_id)))
        except ProviderError as exc:
            if exc.retryable:
                # Unknown outcome: the reconciler adopts it by label, or gives it up after a grace.
                log.warning("rent of offer %s: %s (outcome unknown)", offer.offer_id, exc)
                return "unknown"
            await self._safe(self.writer.instance(instance_id, [ev.RentFailed(
                pool_id=view.pool_id, message=str(exc))], position, meta))
            if not isinstance(exc, OfferUnavailable):
                code, message = problems.from_provider_error(exc, "renting")
                self._problem(code if code == problems.PROVIDER_AUTH else problems.RENT_REFUSED,
                              message if code == problems.PROVIDER_AUTH else f"the provider refused a rental: {exc}")
            return "offer_gone" if isinstance(exc, OfferUnavailable) else "refused"
        self._problem(problems.RENT_REFUSED, None)
        await self._safe(self.writer.instance(instance_id, [ev.InstanceRented(
            pool_id=view.pool_id, provider=provider_name, provider_id=provider_id, offer=offer,
            dph=offer.dph, label=label)], position, meta))
        forget = getattr(self.provider, "forget_taken", None)
        if forget is not None:
            forget(provider_id)
        return "rented"
