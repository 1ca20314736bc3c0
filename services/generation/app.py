"""The generation service shell: project, answer ``cmd.gen.*``, run jobs from the work queue, drain on stop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from typing import Any

import msgspec
import nats
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError

from libs import natsconn
from libs.events import ConcurrencyError, Recorded, streams, subjects
from libs.events import generation as ev
from libs.events.projector import Projection, Projector
from libs.events.store import EventStore, utc_now
from libs.observability import metrics
from libs.responder import responder
from services.pool.view import PoolView
from services.pool.view import project as project_pool

from . import api, queue
from .comfy import Hosts, HttpComfyHosts
from .commands import JobCommands
from .config import GenConfig, gen_config
from .domain import DomainError
from .library import LibraryCommands
from .metrics import GenMetrics
from .outputs import JetStreamObjects, Objects
from .pool_client import NatsPool
from .runner import Deps, JobRunner, Signal
from .view import JobsView, project
from .webhooks import HttpSender, Sender, WebhookDelivery, user_secret
from .worker import Worker

log = logging.getLogger("stoker.generation")
_progress_decoder = msgspec.json.Decoder(api.Progress)
SWEEP_EVERY_S = 5.0


class GenerationService:
    """One generation replica: read model, command responders and (optionally) a job worker."""

    def __init__(self, nc: Client, js: JetStreamContext, config: GenConfig, *, hosts: Hosts | None = None,
                 sender: Sender | None = None, objects: Objects | None = None,
                 clock: Callable[[], datetime] = utc_now) -> None:
        self.nc, self.js, self.config, self.clock = nc, js, config, clock
        self.store = EventStore(js, clock=clock)
        self.projector: Projector[JobsView] = Projector(js, Projection(
            name="gen-jobs", stream=subjects.event_stream(subjects.GENERATION),
            filter_subject=subjects.events_filter(subjects.GENERATION), initial=JobsView(), project=project,
            view_type=None))
        self.pool_projector: Projector[PoolView] = Projector(js, Projection(
            name=f"gen-pool-{config.pool_id}", stream=subjects.event_stream(subjects.POOL),
            filter_subject=subjects.events_filter(subjects.POOL), initial=PoolView(pool_id=config.pool_id),
            project=project_pool, view_type=PoolView))
        self.objects = objects or JetStreamObjects(js)
        pool = NatsPool(nc, actor=f"gen:{config.replica}", pool_id=config.pool_id)
        self.hosts = hosts or HttpComfyHosts(access=pool.host_secret)
        self.sender = sender or HttpSender(allow_private=config.webhooks.allow_private)
        self.progress: dict[str, api.Progress] = {}
        self.pool_changed = Signal()
        self._master = b""
        self.metrics = GenMetrics()
        deps = Deps(store=self.store, pool=pool, hosts=self.hosts,
                    objects=self.objects, publish=nc.publish, pool_view=self.pool_view,
                    waiting_jobs=lambda: len(self.projector.view.queued),
                    enqueue_webhook=lambda job_id: queue.enqueue_webhook(js, job_id, config.pool_id), clock=clock,
                    pool_changed=self.pool_changed, metrics=self.metrics)
        self.runner = JobRunner(deps, config.runner)
        self.webhooks = WebhookDelivery(self.runner, self.sender, self.secret_for, config.webhooks, clock)
        self.jobs = JobCommands(runner=self.runner, projector=self.projector, pool_view=self.pool_view,
                                config=config, enqueue=lambda job_id, ckpt: queue.enqueue_job(js, job_id, ckpt, config.pool_id),
                                unqueue=self._unqueue, progress=self.progress, secret_for=self.secret_for,
                                clock=clock)
        self.library = LibraryCommands(self.jobs, self.objects)
        self.worker = Worker(js, self.runner, self.webhooks, concurrency=config.concurrency,
                             ack_wait=config.ack_wait_s, drain_s=config.drain_s, scope=config.pool_id) if config.worker else None
        worker = self.worker
        self.metrics.watch(lambda: self.projector.view, lambda: worker.busy if worker is not None else 0)
        self._subs: list[Any] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._inflight: set[asyncio.Task[None]] = set()

    @property
    def view(self) -> JobsView:
        """The current read model."""
        return self.projector.view

    def pool_view(self) -> PoolView | None:
        """Our copy of the pool view (None until it caught up)."""
        return self.pool_projector.view if self.pool_projector.caught_up else None

    def secret_for(self, user_id: str) -> str:
        """The user's webhook signing key."""
        return user_secret(self._master, user_id)

    async def start(self) -> None:
        """Declare streams and buckets, catch up, then serve and work."""
        await streams.ensure_streams(self.js, self.config.stream_replicas)
        ensure = getattr(self.objects, "ensure", None)
        if ensure is not None:
            await ensure()
        self._master = await self._master_secret()
        self.projector.listen(self._on_job_event)
        self.pool_projector.listen(lambda view, rec: self.pool_changed.notify())
        await self.projector.start()
        await self.pool_projector.start()
        await self.projector.wait_caught_up(120)
        await self.pool_projector.wait_caught_up(120)
        self._subs.append(await self.nc.subscribe("progress.gen.*", cb=self._on_progress))
        for subject, (type_, handler) in self._routes().items():
            self._subs.append(await self.nc.subscribe(api.for_pool(subject, self.config.pool_id),
                                                      queue=api.QUEUE_GROUP,
                                                      cb=self._responder(type_, handler, subject)))
        if self.worker is not None:
            await self.worker.start()
        self._tasks.append(asyncio.create_task(self._sweep_loop(), name="gen-sweep"))

    def _routes(self) -> dict[str, tuple[type[Any], Callable[[Any], Awaitable[Any]]]]:
        j, lib = self.jobs, self.library
        return {
            api.SUBMIT: (api.SubmitRequest, j.submit), api.GET: (api.GetRequest, j.get),
            api.LIST: (api.ListRequest, j.list), api.CANCEL: (api.CancelRequest, j.cancel),
            api.ESTIMATE: (api.EstimateRequest, j.estimate), api.TEMPLATES: (api.TemplatesRequest, j.templates),
            api.WEBHOOK_SECRET: (api.WebhookSecretRequest, j.webhook_secret),
            api.MUSE_CREATE: (api.MuseCreateRequest, lib.muse_create),
            api.MUSE_UPDATE: (api.MuseUpdateRequest, lib.muse_update),
            api.MUSE_DELETE: (api.MuseIdRequest, lib.muse_delete), api.MUSE_GET: (api.MuseIdRequest, lib.muse_get),
            api.MUSE_LIST: (api.MuseListRequest, lib.muse_list),
            api.MUSE_IMPORT: (api.MuseImportRequest, lib.muse_import),
            api.MUSE_EXPORT: (api.MuseIdRequest, lib.muse_export),
            api.GALLERY_LIST: (api.GalleryListRequest, lib.gallery_list),
            api.GALLERY_TAG: (api.GalleryTagRequest, lib.gallery_tag),
            api.GALLERY_DELETE: (api.GalleryDeleteRequest, lib.gallery_delete),
        }

    def _responder(self, type_: type[Any], handler: Callable[[Any], Awaitable[Any]], command: str
                   ) -> Callable[[Msg], Awaitable[None]]:
        decoder = msgspec.json.Decoder(type_)

        async def answer(msg: Msg) -> api.Reply:
            try:
                req = decoder.decode(msg.data or b"{}")
                reply = api.Reply(ok=True, result=await handler(req))
            except (msgspec.ValidationError, msgspec.DecodeError) as exc:
                reply = api.Reply(ok=False, error=api.Error(code="VALIDATION_FAILED", message=f"invalid request: {exc}"))
            except DomainError as exc:
                reply = api.Reply(ok=False, error=api.Error(code=exc.code, message=str(exc), details=exc.details))
            except ConcurrencyError:
                reply = api.Reply(ok=False, error=api.Error(code="CONFLICT", message="changed meanwhile; retry"))
            except (TimeoutError, nats.errors.Error) as exc:
                log.warning("command %s: NATS trouble: %r", msg.subject, exc)
                reply = api.Reply(ok=False, error=api.Error(code="UNAVAILABLE", message="storage did not answer in "
                                                            "time; retry"))
            except Exception:  # never leak internals to the caller
                log.exception("command %s failed", msg.subject)
                reply = api.Reply(ok=False, error=api.Error(code="INTERNAL", message="internal error"))
            return reply

        return responder("generation", command, answer, self._inflight, error_codes=("INTERNAL", "UNAVAILABLE"))

    def _on_job_event(self, view: JobsView, rec: Recorded) -> None:
        job_id = rec.envelope.aggregate_id
        if isinstance(rec.event, ev.GenerationCancelRequested):
            self.runner.notify_cancel(job_id)
        elif isinstance(rec.event, ev.GenerationCompleted | ev.GenerationFailed):
            self.progress.pop(job_id, None)

    async def _on_progress(self, msg: Msg) -> None:
        try:
            p = _progress_decoder.decode(msg.data)
        except (msgspec.ValidationError, msgspec.DecodeError):
            return
        job = self.view.jobs.get(p.job_id)
        if job is not None and job.terminal:
            return
        old = self.progress.get(p.job_id)
        if old is None or (p.attempt, p.seq) > (old.attempt, old.seq):
            self.progress[p.job_id] = p

    async def _unqueue(self, seq: int) -> None:
        with contextlib.suppress(Exception):  # already taken by a worker: it sees the job cancelled and acks
            await self.js.delete_msg(subjects.JOBS_STREAM, seq)

    async def _master_secret(self) -> bytes:
        """STOKER_WEBHOOK_SECRET, else one random key kept in a KV bucket that every replica shares."""
        if self.config.webhook_secret:
            return self.config.webhook_secret.encode()
        await streams.ensure_bucket(self.js, subjects.GEN_SECRETS_BUCKET)
        kv = await self.js.key_value(subjects.GEN_SECRETS_BUCKET)
        try:
            await kv.create("webhook-master", secrets.token_hex(32).encode())
        except KeyWrongLastSequenceError:
            pass  # another replica made it first
        except Exception as exc:  # older servers answer a generic error for an existing key
            if "wrong last sequence" not in str(exc).lower():
                raise
        try:
            entry = await kv.get("webhook-master")
        except KeyNotFoundError:
            raise RuntimeError("the webhook master key vanished from its bucket") from None
        assert entry.value
        return bytes(entry.value)

    async def _sweep_loop(self) -> None:
        while True:
            await asyncio.sleep(SWEEP_EVERY_S)
            try:
                queued = await self.jobs.sweep()
                if queued:
                    log.info("queued %d job(s) whose queue message was missing", queued)
            except Exception:
                log.exception("sweep failed")

    async def stop(self) -> None:
        """Stop answering, drain the worker, stop projecting, close clients."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for sub in self._subs:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        if self._inflight:
            await asyncio.wait(list(self._inflight), timeout=5.0)
        if self.worker is not None:
            await self.worker.stop()
        await self.projector.stop(checkpoint=False)
        await self.pool_projector.stop(checkpoint=False)
        for client in (self.hosts, self.sender):
            closer = getattr(client, "aclose", None)
            if closer is not None:
                await closer()


async def _connect(url: str, stop: asyncio.Event) -> Client | None:
    """Connect to NATS, waiting for it to come up (a supervisor may start us first); None if stopped."""
    last = [0.0]

    async def on_error(exc: Exception) -> None:
        now = time.monotonic()
        if now - last[0] > 30:  # one line per 30 s while NATS is away, not one per retry
            last[0] = now
            log.warning("NATS at %s: %s", url, exc or type(exc).__name__)

    connect = asyncio.create_task(natsconn.connect(url, name="stoker-generation", max_reconnect_attempts=-1,
                                                   reconnect_time_wait=1, connect_timeout=3, error_cb=on_error))
    stopped = asyncio.create_task(stop.wait())
    await asyncio.wait({connect, stopped}, return_when=asyncio.FIRST_COMPLETED)
    stopped.cancel()
    if connect.done():
        return connect.result()
    connect.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await connect
    return None


async def run(env: Mapping[str, str], stop: asyncio.Event) -> None:
    """Run one generation replica until ``stop`` is set, then drain."""
    config = gen_config(env)
    nc = await _connect(config.nats_url, stop)
    if nc is None:
        return
    service = GenerationService(nc, nc.jetstream(timeout=10), config)
    await service.start()
    exposition = await metrics.serve_from_env(service.metrics.registry, env)
    log.info("generation service %s up (pool %s, worker %s, concurrency %d)", config.replica, config.pool_id,
             "on" if config.worker else "off", config.concurrency)
    await stop.wait()
    log.info("generation service %s stopping", config.replica)
    if exposition is not None:
        await exposition.cleanup()
    await service.stop()
    with contextlib.suppress(Exception):
        await asyncio.wait_for(nc.drain(), 10)
    log.info("generation service %s stopped", config.replica)
