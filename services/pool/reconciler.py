"""Carrying out a reconcile plan: append its events, call the provider, probe, rent."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Literal

import msgspec
import nats.errors

from libs.events import NEW, ConcurrencyError, Metadata, Position
from libs.events import pool as ev
from libs.events.base import Event
from libs.observability import tracing

from . import planner, problems
from . import view as v
from .agent_report import report_of
from .host_secrets import SECRET_ENV, HostSecrets
from .instance import Instance, decide_terminate
from .metrics import PoolMetrics
from .outbox import CONFIG, Outbox, is_safety
from .policies import live as policy_live
from .policy import INSTANCE_TOKEN_ENV
from .probe import ComfyProbe
from .providers.base import OfferUnavailable, Provider, ProviderError, ProviderInstance
from .reputation import avoided_hosts, severity
from .status import label_for
from .writer import PoolWriter

log = logging.getLogger(__name__)
AGENT_VERSION = "0.1.0"  # the agent a rented host installs when STOKER_AGENT_PACKAGE does not say otherwise
SYSTEM = Metadata(actor="pool")
Outcome = Literal["written", "conflict", "queued", "waiting", "dropped"]


def unavailable(exc: BaseException) -> bool:
    """Whether an append failed because NATS is away (not because the aggregate changed)."""
    return isinstance(exc, nats.errors.Error | TimeoutError | OSError) and not isinstance(exc, ConcurrencyError)


# Other names people use for the model tokens (the seed's HUGGINGFACE_HUB_TOKEN among them).
MODEL_TOKEN_ALIASES = {"HF_TOKEN": ("HUGGINGFACE_HUB_TOKEN", "HUGGING_FACE_HUB_TOKEN"),
                       "CIVITAI_TOKEN": ("CIVITAI_API_TOKEN",)}


def with_token_aliases(secrets: Mapping[str, str]) -> dict[str, str]:
    """``secrets`` with each model token also under its canonical name when only an alias is set."""
    out = dict(secrets)
    for name, aliases in MODEL_TOKEN_ALIASES.items():
        if not out.get(name):
            found = next((out[a] for a in aliases if out.get(a)), None)
            if found:
                out[name] = found
    return out


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


def _reason(inst: Instance) -> ev.TerminationReason:
    return inst.terminate_reason or "admin"  # type: ignore[return-value]


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

    def set_model_token(self, name: str, value: str) -> None:
        """Replace a model download token (``HF_TOKEN``, ``CIVITAI_TOKEN``) for instances rented from now on."""
        self._secrets[name] = value

    def __init__(self, writer: PoolWriter, provider: Provider, probe: ComfyProbe, *,
                 clock: Callable[[], datetime], settings: planner.Settings = planner.Settings(),
                 secrets: Mapping[str, str] | None = None, metrics: PoolMetrics | None = None,
                 connected: Callable[[], bool] = lambda: True, host_secrets: HostSecrets | None = None) -> None:
        self.writer = writer
        self.connected = connected  # is NATS reachable right now (nc.is_connected)
        self.outbox = Outbox()  # safety decisions taken while it was not
        self._destroyed_offline: set[str] = set()
        self.metrics = metrics or PoolMetrics()
        self.provider = provider
        self.probe = probe
        self.clock = clock
        self.settings = settings
        self._secrets = with_token_aliases(secrets or {})  # model tokens, by env name: only ever sent to the provider
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
        """One full pass (from the last known view while NATS is away: see outbox.py)."""
        if len(self.outbox) and self.connected():
            await self.outbox.flush(self.writer, SYSTEM)
            if not len(self.outbox):
                self._destroyed_offline.clear()
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
        target, decided = policy_live.decide(view, self.clock())
        if decided:
            await self._safe(self.writer.config(decided, SYSTEM))
            view = self.writer.view
        plan = planner.plan(view, listed, self.clock(), settings=self.settings,
                            in_flight=frozenset(self.in_flight), target=target)
        await self._apply(view, plan)
        if listed is not None and plan.rent == 0 and not self._checked & set(problems.RENTING) \
                and not self.in_flight:
            self._checked.update(problems.RENTING)  # nothing to rent: no renting problem stands
        await self._flush_problems()
        self.passes += 1
        return plan

    async def _apply(self, view: v.PoolView, plan: planner.Plan) -> None:
        if plan.config_events:
            await self._record(CONFIG, plan.config_events, None)
        destroy = {i.id: i for i in plan.destroy}
        for instance_id, events in plan.events.items():
            inst = view.instances[instance_id]
            outcome = await self._record(instance_id, events, inst.position)
            if outcome in ("queued", "waiting") and any(isinstance(e, ev.TerminateRequested) for e in events):
                destroy[inst.id] = inst  # NATS is away: terminate now, the event follows when it is back
        offline = bool(len(self.outbox)) or not self.connected()
        if offline:
            destroy = {k: i for k, i in destroy.items() if k not in self._destroyed_offline}
        for p in plan.orphans if not offline else ():
            await self._adopt_orphan(view.pool_id, p)
        await asyncio.gather(*(self._destroy(i, offline) for i in destroy.values()),
                             *(self._confirm_gone(i) for i in plan.confirm_gone),
                             *(self._probe(i) for i in plan.probe))
        if plan.rent and not offline:  # a rental must be recorded before it is made
            await self.rent(plan.rent, key=f"reconcile:{view.seq}", meta=SYSTEM)
        elif not plan.config_events:
            self._settled()

    def _settled(self) -> None:
        """Nothing to rent: "no offers" no longer matters, and "hosts avoided" ends with the penalties."""
        view = self.writer.view
        avoided = avoided_hosts(view.penalties, self.clock())
        on_avoided = any(i.offer and i.offer.host_id in avoided for i in v.live(view))
        self._problem(problems.NO_OFFERS, None)
        if not on_avoided:
            self._problem(problems.HOSTS_AVOIDED, None)

    async def _record(self, key: str, events: list[ev.Event], expected: Position | None) -> Outcome:
        """Append decided events to an instance (or, with CONFIG, the pool config); keep safety ones for later
        when NATS is away."""
        if key in self.outbox:
            return "waiting"
        if self.connected():
            try:
                if key == CONFIG:
                    await self.writer.config(events, SYSTEM)
                else:
                    assert expected is not None
                    await self.writer.instance(key, events, expected, SYSTEM)
                return "written"
            except ConcurrencyError as exc:
                log.info("reconcile: %s changed meanwhile; next pass decides again", exc.subject)
                return "conflict"
            except Exception as exc:
                if not unavailable(exc):
                    raise
        if not is_safety(events):
            return "dropped"  # decided again from the view once NATS is back
        self.outbox.add(key, events, expected)
        log.warning("NATS unavailable: acting on the last known state for %s; its events are recorded when it "
                    "is back", key or "the pool config")
        return "queued"

    async def _safe(self, write: object) -> None:
        try:
            await write  # type: ignore[misc]
        except ConcurrencyError as exc:
            log.info("reconcile: %s changed meanwhile; next pass decides again", exc.subject)
        except Exception as exc:
            if not unavailable(exc):
                raise
            log.info("reconcile: NATS unavailable (%s); next pass decides again", type(exc).__name__)

    async def _adopt_orphan(self, pool_id: str, p: ProviderInstance) -> None:
        instance_id = f"orphan-{p.provider_id}"
        existing = self.writer.view.instances.get(instance_id)
        if existing is not None and existing.phase == "terminating":
            return
        log.warning("orphan instance %s (%s) found at the provider: terminating it", p.provider_id, p.label)
        event = ev.OrphanFound(pool_id=pool_id, provider=self.provider.name, provider_id=p.provider_id,
                               label=p.label or "", dph=p.dph)
        await self._safe(self.writer.instance(instance_id, [event], existing.position if existing else NEW, SYSTEM))
        if await self._destroy_id(p.provider_id):
            await self._confirmed_gone(instance_id, p.provider_id)

    async def _destroy(self, inst: Instance, offline: bool = False) -> None:
        if not inst.provider_id:
            return
        gone = await self._destroy_id(inst.provider_id)
        if gone is None:
            return
        if offline:
            self._destroyed_offline.add(inst.id)
            log.warning("terminated instance %s (%s) while NATS is away", inst.id, inst.provider_id)
        elif gone:
            await self._confirmed_gone(inst.id, inst.provider_id)

    async def _destroy_id(self, provider_id: str) -> bool | None:
        """Send the destroy: True when the provider answered the instance is already gone, False when the
        destroy was sent, None when it failed (retried next pass)."""
        try:
            return await self.provider.destroy_instance(provider_id) is True
        except ProviderError as exc:
            log.warning("destroy of %s failed (%s); retrying next pass", provider_id, exc)
            return None

    async def _confirmed_gone(self, instance_id: str, provider_id: str) -> None:
        """The provider said "already gone" to a destroy: one such answer confirms the termination."""
        inst = self.writer.view.instances.get(instance_id)
        if inst is None or inst.phase != "terminating" or inst.provider_id != provider_id:
            return
        await self._safe(self.writer.instance(inst.id, [ev.Terminated(
            pool_id=inst.pool_id, reason=_reason(inst), provider_id=provider_id,
            detail="the provider answered that it is already gone")], inst.position, SYSTEM))

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
        await self._record(inst.id, [ev.Terminated(pool_id=inst.pool_id, reason=reason, provider_id=inst.provider_id)],
                           inst.position)

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
        now = self.clock()
        avoided = avoided_hosts(view.penalties, now)
        limit = len(wanted) + len(used_machines) + 10
        try:
            offers = await self.provider.search_offers(cfg.offer_filter, limit=limit, exclude_hosts=avoided)
            offers = [o for o in offers if o.machine_id not in used_machines]
            fallback: list[ev.Offer] = []
            if len(offers) < len(wanted) and avoided:
                found = await self.provider.search_offers(cfg.offer_filter, limit=limit + len(avoided))
                fallback = sorted((o for o in found if o.host_id in avoided and o.machine_id not in used_machines),
                                  key=lambda o: (severity(view.penalties, o.host_id, now), o.dph))
        except ProviderError as exc:
            log.warning("offer search failed: %s", exc)
            self.last_error = f"offer search failed: {exc}"
            self._problem(*problems.from_provider_error(exc, "searching offers"), checked=problems.LISTING)
            return ids
        self._report_offers(len(wanted), len(offers), fallback, avoided, cfg.offer_filter)
        offers += fallback  # reputation alone never keeps the pool below its size: least penalised first
        await asyncio.gather(*(self._rent_one(instance_id, offers, meta) for instance_id in wanted))
        return ids

    def _report_offers(self, wanted: int, clean: int, fallback: list[ev.Offer], avoided: frozenset[str],
                       flt: ev.OfferFilter) -> None:
        """Say why the pool cannot rent (or rents from avoided hosts) instead of waiting silently."""
        if clean >= wanted:
            self._problem(problems.NO_OFFERS, None)
            self._problem(problems.HOSTS_AVOIDED, None)
        elif fallback:
            self._problem(problems.NO_OFFERS, None)
            which = "every offer" if clean == 0 else f"all but {clean} of the offers"
            self._problem(problems.HOSTS_AVOIDED, (
                f"{which} matching the filter are on hosts the pool avoids after failures "
                f"({len(avoided)} host(s) avoided); renting from the least penalised. "
                f"Widen the offer filter, or reset the pool to forget the penalties"))
        else:
            self._problem(problems.NO_OFFERS, None if clean else problems.no_offers_message(flt))

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
