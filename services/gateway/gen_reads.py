"""The gateway's own projection of the generation stream, and the live progress of running jobs.

The projection is the generation service's pure read model (``services.generation.view``),
folded here too, plus charged usage per user. The gateway answers from it what the
generation service's API does not: who owns a job or an output (for admins, SSE routing and
the ComfyUI-compatible routes), the gallery with its filters, and per-user usage. Progress
(``progress.gen.<job id>``) and job changes go to listeners: the live hub routes them to
each job's owner.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from typing import Any

import msgspec
from aiohttp import web
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from libs.events import Recorded, codec, subjects
from libs.events import generation as ev
from libs.events.ids import is_subject_token
from libs.events.projector import Projection, Projector
from services.gateway import usage as u
from services.gateway.dependencies import Unavailable
from services.gateway.gen_views import loras
from services.gateway.gen_client import GenClient
from services.gateway.resources import (
    COMFY_CLIENTS,
    COMFY_INFO,
    CONFIG,
    GEN_CLIENT,
    GEN_READS,
    HUB,
    JS,
    NATS,
    POOL_CLIENT,
    POOL_READS,
)
from services.generation import api
from services.generation.domain import Job
from services.generation.view import JobsView, project
from services.pool import api as pool_api

log = logging.getLogger("stoker.gateway")

JobListener = Callable[[Job, Recorded], None]
ProgressListener = Callable[[api.Progress, Job], None]
GpusOf = Callable[[str], int]
GEN_STREAM = subjects.event_stream(subjects.GENERATION)
_progress_decoder = msgspec.json.Decoder(api.Progress)
REQUEST_CACHE_BYTES = 32 * 1024 * 1024  # requests carry whole workflows (up to 512 KiB each)


class GatewayGenView:
    """The generation read model and charged usage per user and day (updated in place by ``project_gen``)."""

    def __init__(self) -> None:
        self.jobs = JobsView()
        self.usage: u.UserDays = {}


def project_gen(view: GatewayGenView, rec: Recorded, gpus_of: GpusOf) -> GatewayGenView:
    """Fold one generation event into the read model and, for a charge, into the user's usage."""
    project(view.jobs, rec)
    event = rec.event
    if isinstance(event, ev.GenerationCharged):
        u.add_charge(view.usage, event.user_id, rec.envelope.occurred_at, event.seconds, event.amount,
                     gpus_of(event.instance_id))
    return view


class GenReads:
    """Follows the generation stream and the progress subjects; answers ownership and gallery reads."""

    def __init__(self, nc: NatsClient, js: JetStreamContext, *, gpus_of: GpusOf = lambda _: 1) -> None:
        self._nc, self._js = nc, js
        self.projector: Projector[GatewayGenView] = Projector(js, Projection(
            name="gateway-gen", stream=GEN_STREAM, filter_subject=subjects.events_filter(subjects.GENERATION),
            initial=GatewayGenView(), project=lambda view, rec: project_gen(view, rec, gpus_of), view_type=None))
        self._job_listeners: list[JobListener] = []
        self._progress_listeners: list[ProgressListener] = []
        self._requests: OrderedDict[str, tuple[ev.GenerationRequested, int]] = OrderedDict()
        self._request_bytes = 0
        self._sub: object | None = None
        self.projector.listen(self._on_event)

    @property
    def jobs(self) -> JobsView:
        """The generation read model."""
        return self.projector.view.jobs

    @property
    def usage(self) -> u.UserDays:
        """Charged usage: day -> user -> bucket."""
        return self.projector.view.usage

    def listen(self, listener: JobListener) -> None:
        """Call ``listener(job, recorded)`` after each job event is applied (a failing listener is logged)."""
        self._job_listeners.append(listener)

    def listen_progress(self, listener: ProgressListener) -> None:
        """Call ``listener(progress, job)`` for each progress message of a job that is not over."""
        self._progress_listeners.append(listener)

    def _on_event(self, view: GatewayGenView, rec: Recorded) -> None:
        if rec.envelope.aggregate_type != ev.JOB or not self._job_listeners:
            return
        job = view.jobs.jobs.get(rec.envelope.aggregate_id)
        if job is None:
            return
        for listener in self._job_listeners:
            try:
                listener(job, rec)
            except Exception:  # a listener bug must not stop the projection
                log.exception("generation listener failed on seq %d", rec.seq)

    async def _on_progress(self, msg: Msg) -> None:
        try:
            progress = _progress_decoder.decode(msg.data)
        except (msgspec.ValidationError, msgspec.DecodeError):
            return
        job = self.jobs.jobs.get(progress.job_id)
        if job is None or job.terminal:
            return
        for listener in self._progress_listeners:
            try:
                listener(progress, job)
            except Exception:
                log.exception("progress listener failed for job %s", progress.job_id)

    def job(self, job_id: str, user_id: str | None) -> Job | None:
        """The job, if ``user_id`` owns it (None: anyone's, for admins)."""
        job = self.jobs.jobs.get(job_id)
        if job is None or job.status == "new" or (user_id is not None and job.user_id != user_id):
            return None
        return job

    async def find_job(self, job_id: str, user_id: str | None) -> Job | None:
        """``job``, waiting (bounded) for the projection to catch up when it does not know the job yet."""
        job = self.job(job_id, user_id)
        if job is None and job_id not in self.jobs.jobs:
            if not self._nc.is_connected:
                raise Unavailable("nats")  # it may exist: the view cannot catch up while NATS is away
            await self.settle()
            job = self.job(job_id, user_id)
        return job

    async def settle(self, timeout: float = 2.0) -> None:
        """Read your own writes: wait (bounded) until the projection includes the stream's current end."""
        with contextlib.suppress(Exception):
            info = await self._js.stream_info(GEN_STREAM)
            await self.projector.wait_for(info.state.last_seq, timeout)

    async def request_of(self, job_id: str) -> ev.GenerationRequested | None:
        """The job's request with its workflow (the projection drops workflows); one direct get, cached."""
        cached = self._requests.get(job_id)
        if cached is not None:
            self._requests.move_to_end(job_id)
            return cached[0]
        if not is_subject_token(job_id):
            return None
        try:
            msg = await self._js.get_msg(GEN_STREAM, 1, subject=f"ev.{subjects.GENERATION}.{ev.JOB}.{job_id}",
                                         next=True)
            event = codec.decode(msg.data or b"").event
        except (NotFoundError, codec.DecodeError):
            return None
        if not isinstance(event, ev.GenerationRequested):
            return None
        size = len(msg.data or b"")
        self._requests[job_id] = (event, size)
        self._request_bytes += size
        while self._request_bytes > REQUEST_CACHE_BYTES and len(self._requests) > 1:
            self._request_bytes -= self._requests.popitem(last=False)[1][1]
        return event

    async def loras(self, job_ids: list[str]) -> dict[str, list[Any]]:
        """The LoRAs of each job's workflow (read from its request event; cached like ``request_of``)."""
        unique = list(dict.fromkeys(job_ids))
        requests = await asyncio.gather(*(self.request_of(job_id) for job_id in unique))
        return {job_id: loras(req) for job_id, req in zip(unique, requests, strict=True)}

    async def start(self, catch_up_timeout: float = 30.0) -> None:
        """Replay and follow the stream (bounded wait for the replay); then follow progress."""
        await self.projector.start()
        try:
            await self.projector.wait_caught_up(catch_up_timeout)
        except TimeoutError:
            log.warning("generation view still catching up after %.0f s; serving what it has", catch_up_timeout)
        self._sub = await self._nc.subscribe("progress.gen.*", cb=self._on_progress)

    async def stop(self) -> None:
        """Stop following."""
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()  # type: ignore[attr-defined]
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.projector.stop(checkpoint=False), 5)


async def gen_ctx(app: web.Application) -> AsyncIterator[None]:
    """The generation client, the generation projection and the ComfyUI-compatible API's state."""
    from services.gateway.comfy_proxy import InstanceInfo  # the ComfyUI modules read this one
    from services.gateway.comfy_ws import ComfyClients

    def gpus_of(instance_id: str) -> int:
        inst = app[POOL_READS].view.instances.get(instance_id)
        return max(1, inst.offer.num_gpus) if inst is not None and inst.offer is not None else 1

    reads = GenReads(app[NATS], app[JS], gpus_of=gpus_of)
    reads.listen(app[HUB].on_job_event)
    reads.listen_progress(app[HUB].on_progress)
    app[GEN_READS] = reads
    app[GEN_CLIENT] = GenClient(app[NATS], timeout=app[CONFIG].pool_timeout_s, pool_id=app[CONFIG].pool_id)
    app[COMFY_CLIENTS] = ComfyClients()
    async def host_secret(base_url: str) -> str:
        result = await app[POOL_CLIENT].send(pool_api.HOST_ACCESS, pool_api.HostAccessRequest(base_url=base_url))
        return str((result or {}).get("secret") or "")

    app[COMFY_INFO] = InstanceInfo(lambda: app[POOL_READS].view, access=host_secret)
    await reads.start()
    yield
    await reads.stop()
