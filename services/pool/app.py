"""The pool service shell: connect, project, answer commands, reconcile when leading, drain on a signal."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import msgspec
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from libs import natsconn
from libs.events import ConcurrencyError, streams, subjects
from libs.events import pool as ev
from libs.events.checkpoints import KeyValueCheckpoints
from libs.events.projector import Projection, Projector
from libs.events.store import EventStore, utc_now
from libs.observability import logs, metrics, tracing
from libs.responder import responder

from . import api, planner
from .alerts import AlertSender, webhook_config
from .handlers import Commands, meta_of
from .heartbeats import Heartbeats
from .host_secrets import HostSecrets, load_key
from .joining import Joining
from .providers.agents import AgentsProvider
from .providers.composite import CompositeProvider
from .instance import PoolError
from .leader import LeaderLease
from .metrics import PoolMetrics
from .probe import ComfyProbe, HttpComfyProbe
from .providers.base import Provider
from .reconciler import Reconciler
from .view import PoolView, project
from .writer import PoolWriter

log = logging.getLogger(__name__)



class ServiceConfig(msgspec.Struct, frozen=True, kw_only=True):
    """Settings of one pool service process."""

    pool_id: str = "default"
    reconcile_interval_s: float = 2.0
    leader_ttl_s: float = 5.0
    listing_grace_s: float = 60.0
    rent_grace_s: float = 120.0
    initial_desired_size: int = 0
    replica: str = ""
    stream_replicas: int = 1


def service_config(env: Mapping[str, str]) -> ServiceConfig:
    """Read the service's settings from an environment-like mapping."""
    provider = env.get("STOKER_PROVIDER", "vastai")
    return ServiceConfig(
        pool_id=env.get("STOKER_POOL_ID", "default"),
        reconcile_interval_s=float(env.get("STOKER_RECONCILE_INTERVAL", "2")),
        leader_ttl_s=float(env.get("STOKER_LEADER_TTL", "5")),
        listing_grace_s=float(env.get("STOKER_LISTING_GRACE", "60" if provider == "vastai" else "15")),
        rent_grace_s=float(env.get("STOKER_RENT_GRACE", "120" if provider == "vastai" else "30")),
        initial_desired_size=int(env.get("STOKER_POOL_MIN_SIZE") or env.get("STOKER_POOL_DESIRED_SIZE")  # old name
                                 or ("1" if provider == "sim" else "0")),
        replica=env.get("STOKER_REPLICA", f"{socket.gethostname()}-{os.getpid()}"),
        stream_replicas=streams.replicas_from(env),
    )


def initial_config(provider: str, desired_size: int) -> ev.PoolConfig:
    """A new pool's configuration: the default template downloads (and waits for) what the built-in generation
    templates load; hosts you already run (``static``) download nothing, so nothing is required of them."""
    if provider == "static":
        return ev.PoolConfig(min_size=desired_size, template=ev.InstanceTemplate(models=()),
                             readiness=ev.Readiness(required_models=()))
    return ev.PoolConfig(min_size=desired_size)


class PoolService:
    """One pool replica: projection, command handlers, leader lease and reconcile loop."""

    def __init__(self, nc: Client, js: JetStreamContext, provider: Provider, *, config: ServiceConfig,
                 probe: ComfyProbe | None = None, clock: Callable[[], datetime] = utc_now,
                 env: Mapping[str, str] | None = None) -> None:
        self.nc, self.js, self.config, self.clock = nc, js, config, clock
        self._env = dict(env or {})
        self.heartbeats = Heartbeats(js, config.pool_id)
        if getattr(provider, "runs_agent", True) and self._env.get("STOKER_OWN_BOXES", "1") != "0":
            # Own boxes (joined with a join token) are offered before anything rented.
            provider = CompositeProvider(AgentsProvider(lambda: self.projector.view, self.heartbeats.all,
                                                        lost_after_s=float(self._env.get("STOKER_NODE_LOST_AFTER",
                                                                                         "30"))), provider)
        self.provider = provider
        projection = Projection(name=f"pool-{config.pool_id}", stream=subjects.event_stream(subjects.POOL),
                                filter_subject=subjects.events_filter(subjects.POOL),
                                initial=PoolView(pool_id=config.pool_id), project=project, view_type=PoolView)
        self.projector = Projector(js, projection, checkpoints=KeyValueCheckpoints(js))
        self.metrics = PoolMetrics()
        self.metrics.watch(lambda: self.projector.view, clock)
        self.writer = PoolWriter(EventStore(js, clock=clock), self.projector, on_append=self.metrics.observe_events)
        self.probe = probe or HttpComfyProbe()
        self.reconciler = Reconciler(self.writer, provider, self.probe, clock=clock, secrets=self._env,
                                     settings=planner.Settings(listing_grace_s=config.listing_grace_s,
                                                               rent_grace_s=config.rent_grace_s),
                                     metrics=self.metrics, connected=lambda: nc.is_connected)
        self.commands = Commands(self.writer, self.reconciler, clock, metrics=self.metrics)
        self.joining = Joining(self.writer, lambda: self.reconciler.host_secrets, self.heartbeats,
                               lambda: self.projector.view.config.template.models)
        self.lease = LeaderLease(js, f"pool-reconciler.{config.pool_id}", config.replica or "pool",
                                 ttl=config.leader_ttl_s)
        hook = webhook_config(self._env)
        self.alerts = AlertSender(self.writer.store, hook, config.pool_id) if hook is not None else None
        self._tasks: list[asyncio.Task[Any]] = []
        self._subs: list[Any] = []
        self._inflight: set[asyncio.Task[None]] = set()

    @property
    def view(self) -> PoolView:
        """The current pool view."""
        return self.projector.view

    async def start(self) -> None:
        """Catch up, make sure the pool is configured, then serve and reconcile."""
        await streams.ensure_streams(self.js, self.config.stream_replicas)
        self.projector.listen(self._alert)
        if getattr(self.provider, "runs_agent", True):  # static hosts are plain ComfyUI: no agent, no secret
            self.reconciler.host_secrets = HostSecrets(await load_key(self.js, self._env, self.config.pool_id),
                                                       self.config.pool_id)
        await self.projector.start()
        await self.projector.wait_caught_up(120)
        if not self.view.configured:
            cfg = initial_config(self.provider.name, self.config.initial_desired_size)
            with contextlib.suppress(ConcurrencyError):  # another replica configured it first
                await self.writer.config([ev.PoolConfigured(pool_id=self.config.pool_id, config=cfg)],
                                         meta_of(api.Request(actor="pool")))
        routes: dict[str, tuple[type[Any], Callable[[Any], Awaitable[Any]]]] = {
            api.CLAIM: (api.ClaimRequest, self.commands.claim),
            api.RELEASE: (api.ReleaseRequest, self.commands.release),
            api.RENEW: (api.RenewRequest, self.commands.renew),
            api.PREWARM: (api.PrewarmRequest, self.commands.prewarm),
            api.TERMINATE: (api.TerminateRequest, self.commands.terminate),
            api.CONFIGURE: (api.ConfigureRequest, self.commands.configure),
            api.SAFE_MODE: (api.SafeModeRequest, self.commands.safe_mode),
            api.RESET: (api.ResetRequest, self.commands.reset),
            api.STATUS: (api.StatusRequest, self.commands.status),
            api.HOST_ACCESS: (api.HostAccessRequest, self.commands.host_access),
            api.HOST_LOGS: (api.HostLogsRequest, self.commands.host_logs),
            api.CREATE_JOIN_TOKEN: (api.CreateJoinTokenRequest,
                                    lambda r: self.joining.create(r.label, r.dph, meta_of(r))),
            api.REVOKE_JOIN_TOKEN: (api.RevokeJoinTokenRequest, lambda r: self.joining.revoke(r.token_id, meta_of(r))),
            api.AGENT_JOIN: (api.AgentJoinRequest,
                             lambda r: self.joining.join(r.token, r.url, r.name, r.gpu_name, meta_of(r))),
            api.AGENT_HEARTBEAT: (api.AgentHeartbeatRequest, lambda r: self.joining.heartbeat(r.token, r.node_id)),
            api.POLICY: (api.PolicyRequest, self.commands.apply_policy),
            api.SIMULATE: (api.SimulateRequest, self._simulate),
        }
        for subject, (type_, handler) in routes.items():
            self._subs.append(await self.nc.subscribe(api.for_pool(subject, self.config.pool_id),
                                                      queue=api.QUEUE_GROUP,
                                                      cb=self._responder(type_, handler, subject)))
        # Every replica needs a new provider key, so this one is not a queue subscription.
        self._subs.append(await self.nc.subscribe(api.for_pool(api.SET_PROVIDER_KEY, self.config.pool_id),
                                                  cb=self._responder(api.SetProviderKeyRequest, self._set_key,
                                                                     api.SET_PROVIDER_KEY)))
        self._tasks.append(asyncio.create_task(self.lease.run(), name="pool-lease"))
        self._tasks.append(asyncio.create_task(self._reconcile_loop(), name="pool-reconcile"))

    def _alert(self, view: PoolView, rec: Any) -> None:
        """Alert on live events only (not the replay at start), from the leader only."""
        if self.alerts is not None and self.projector.caught_up and self.lease.is_leader \
                and getattr(rec.envelope.event, "pool_id", None) == self.config.pool_id:
            self.alerts.on_event(rec)

    async def _simulate(self, req: api.SimulateRequest) -> dict[str, Any]:
        from .policies.service import simulate_history
        return await simulate_history(self.js, self.config.pool_id, req.days, list(req.policies), self.clock(),
                                      target_p95=req.target_p95)

    async def _set_key(self, req: api.SetProviderKeyRequest) -> dict[str, Any]:
        if req.provider in api.MODEL_TOKEN_ENV:  # a model source's token, for the machines rented from now on
            logs.redact(req.api_key)
            self.reconciler.set_model_token(api.MODEL_TOKEN_ENV[req.provider], req.api_key)
            log.info("model token for %s was replaced at runtime by %s", req.provider, req.actor)
            return {"provider": req.provider, "updated": True}
        if req.provider != self.provider.name and not (req.provider == "vastai" and self.provider.name == "sim"):
            raise PoolError(f"this pool uses provider {self.provider.name!r}, not {req.provider!r}",
                            "VALIDATION_FAILED")
        logs.redact(req.api_key)  # masked in every log line from now on
        if not self.reconciler.set_api_key(req.api_key):
            raise PoolError(f"provider {self.provider.name!r} takes no API key", "VALIDATION_FAILED")
        log.info("provider key for %s was replaced at runtime by %s", self.provider.name, req.actor)
        return {"provider": self.provider.name, "updated": True}

    def _responder(self, type_: type[Any], handler: Callable[[Any], Awaitable[Any]], command: str
                   ) -> Callable[[Msg], Awaitable[None]]:
        decoder = msgspec.json.Decoder(type_)

        async def answer(msg: Msg) -> api.Reply:
            try:
                req = decoder.decode(msg.data or b"{}")
                reply = api.Reply(ok=True, result=await handler(req))
            except (msgspec.ValidationError, msgspec.DecodeError) as exc:
                reply = api.Reply(ok=False, error=api.Error(code="VALIDATION_FAILED", message=str(exc)))
            except PoolError as exc:
                reply = api.Reply(ok=False, error=api.Error(code=exc.code, message=str(exc)))
            except ConcurrencyError:
                reply = api.Reply(ok=False, error=api.Error(code="CONFLICT",
                                                            message="the instance changed meanwhile; retry"))
            except Exception:  # never leak internals to the caller
                log.exception("command %s failed", msg.subject)
                reply = api.Reply(ok=False, error=api.Error(code="INTERNAL", message="internal error"))
            return reply

        return responder("pool", command, answer, self._inflight)

    async def _reconcile_loop(self) -> None:
        while True:
            self.metrics.leader.set(float(self.lease.is_leader))
            if self.lease.is_leader:
                await self._reconcile_once()
            await asyncio.sleep(self.config.reconcile_interval_s)

    async def _reconcile_once(self) -> None:
        """One pass, in its own trace (it answers no request)."""
        with tracing.root_span("pool", "pool.reconcile", attributes={"stoker.pool_id": self.config.pool_id}), \
                self.metrics.reconciles.time():
            try:
                await self.reconciler.run_once()
            except Exception:
                self.metrics.reconcile_errors.inc()
                log.exception("reconcile pass failed")

    async def stop(self) -> None:
        """Stop reconciling, give up the lease, stop answering, checkpoint."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.lease.release()
        for sub in self._subs:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        await self.projector.stop()
        if self.alerts is not None:
            await self.alerts.aclose()
        closer = getattr(self.probe, "aclose", None)
        if closer is not None:
            await closer()


async def connect_nats(url: str, env: Mapping[str, str] | None = None, **options: Any) -> Client:
    """Connect for good (with this service's credentials): reconnect forever, one throttled line (not a
    traceback) per outage."""
    where = urlsplit(url)._replace(netloc=urlsplit(url).hostname or "").geturl() if "@" in url else url

    async def reconnected() -> None:
        log.info("NATS at %s: reconnected", where)

    return await natsconn.connect(url, env=env, name="stoker-pool", max_reconnect_attempts=-1,
                                  error_cb=logs.throttled_errors(log, f"NATS at {where}"),
                                  reconnected_cb=reconnected, **options)


async def run(env: Mapping[str, str], stop: asyncio.Event) -> None:
    """Run one pool replica until ``stop`` is set, then drain."""
    from .providers.factory import make_provider

    nc = await connect_nats(env.get("NATS_URL", "nats://127.0.0.1:4222"), env)
    provider = make_provider(env)
    service = PoolService(nc, nc.jetstream(), provider, config=service_config(env), env=env)
    await service.start()
    exposition = await metrics.serve_from_env(service.metrics.registry, env)
    log.info("pool service %s up (pool %s, provider %s)", service.config.replica, service.config.pool_id,
             provider.name)
    await stop.wait()
    if exposition is not None:
        await exposition.cleanup()
    await service.stop()
    await provider.aclose()
    await nc.drain()
