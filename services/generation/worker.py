"""The JOBS work-queue consumer: several workers share the durable ``gen-workers`` pull consumer.

Each message is held with ``in_progress`` heartbeats while it runs, so only a dead (or cut
off) worker's messages are redelivered after ``ack_wait``. On stop the worker fetches no
more, gives running jobs ``drain_s`` to finish, then naks the rest for another worker to
resume at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import msgspec
from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import BadRequestError, FetchTimeoutError
from opentelemetry import trace
from opentelemetry.trace import SpanKind

from libs.events import subjects
from libs.events.quarantine import Quarantine
from libs.observability import tracing

from . import queue
from .runner import Ack, Disposition, JobRunner, Nak, Term
from .webhooks import WebhookDelivery

log = logging.getLogger("stoker.generation.worker")


def consumer_config(ack_wait: float, scope: str) -> ConsumerConfig:
    """The durable pull consumer one pool's workers share on the JOBS stream."""
    return ConsumerConfig(durable_name=subjects.jobs_durable(scope), ack_policy=AckPolicy.EXPLICIT,
                          deliver_policy=DeliverPolicy.ALL, ack_wait=ack_wait, max_deliver=-1,
                          filter_subject=subjects.jobs_subject(scope), max_ack_pending=10000)


async def ensure_consumer(js: JetStreamContext, ack_wait: float, scope: str) -> None:
    """Create the durable consumer, or bring its ack wait to ours."""
    config = consumer_config(ack_wait, scope)
    try:
        await js.add_consumer(subjects.JOBS_STREAM, config)
    except BadRequestError as exc:
        log.info("updating consumer %s (%s)", config.durable_name, exc.description)
        info = await js.consumer_info(subjects.JOBS_STREAM, subjects.jobs_durable(scope))
        merged = info.config
        merged.ack_wait = ack_wait
        await js.add_consumer(subjects.JOBS_STREAM, merged)


class Worker:
    """Fetches job and webhook messages and runs up to ``concurrency`` of them at once."""

    def __init__(self, js: JetStreamContext, runner: JobRunner, webhooks: WebhookDelivery, *, concurrency: int,
                 ack_wait: float, drain_s: float = 10.0, scope: str = "default") -> None:
        self.js, self.runner, self.webhooks, self.scope = js, runner, webhooks, scope
        self.concurrency, self.ack_wait, self.drain_s = concurrency, ack_wait, drain_s
        self.quarantine = Quarantine(js, "gen-workers")
        self._slots = asyncio.Semaphore(concurrency)
        self._tasks: dict[asyncio.Task[None], Msg] = {}
        self._loop: asyncio.Task[None] | None = None
        self._sub: Any = None
        self._stopping = False

    @property
    def busy(self) -> int:
        """Messages being handled now."""
        return len(self._tasks)

    async def start(self) -> None:
        """Bind to the consumer and start fetching."""
        await ensure_consumer(self.js, self.ack_wait, self.scope)
        self._sub = await self.js.pull_subscribe_bind(subjects.jobs_durable(self.scope), subjects.JOBS_STREAM)
        self._loop = asyncio.create_task(self._fetch_loop(), name="gen-worker-fetch")

    async def _fetch_loop(self) -> None:
        while not self._stopping:
            await self._slots.acquire()
            try:
                msgs = await self._sub.fetch(1, timeout=5.0)
            except (FetchTimeoutError, NatsTimeoutError, TimeoutError):
                self._slots.release()
                continue
            except asyncio.CancelledError:
                self._slots.release()
                raise
            except Exception as exc:  # noqa: BLE001 - connection trouble of any kind: keep trying
                self._slots.release()
                log.warning("fetch failed: %s", exc)
                await asyncio.sleep(1.0)
                continue
            for msg in msgs:
                task = asyncio.create_task(self._handle(msg))
                self._tasks[task] = msg
                task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.pop(task, None)
        self._slots.release()

    async def _heartbeat(self, msg: Msg) -> None:
        while True:
            await asyncio.sleep(max(self.ack_wait / 3, 0.2))
            with contextlib.suppress(Exception):
                await msg.in_progress()

    async def _handle(self, msg: Msg) -> None:
        # The message carries the trace of the request that queued it (redeliveries keep their headers).
        with tracing.continued("generation", f"{subjects.JOBS_SUBJECT} process", headers=msg.headers,
                               kind=SpanKind.CONSUMER,
                               attributes={"messaging.system": "nats", "messaging.destination.name": msg.subject,
                                           "messaging.message.delivery_count": msg.metadata.num_delivered}):
            await self._handle_traced(msg)

    async def _handle_traced(self, msg: Msg) -> None:
        beat = asyncio.create_task(self._heartbeat(msg))
        try:
            disposition = await self._dispatch(msg)
        except asyncio.CancelledError:
            disposition = Nak(0)  # stopping: another worker resumes it now
        except Exception:  # NATS or store trouble is transient: back off by delivery count
            delay = float(min(30, 2 ** min(msg.metadata.num_delivered, 5)))
            log.exception("job message %s failed; retrying in %.0fs", msg.metadata.sequence.stream, delay)
            disposition = Nak(delay)
        finally:
            beat.cancel()
        try:
            match disposition:
                case Ack():
                    await msg.ack()
                case Nak(delay=delay):
                    await msg.nak(delay=delay if delay > 0 else None)
                case Term(reason=reason):
                    await self.quarantine.put(stream=subjects.JOBS_STREAM, subject=msg.subject,
                                              seq=msg.metadata.sequence.stream, data=msg.data, kind="poison",
                                              error=reason)
                    await msg.term()
        except Exception as exc:  # noqa: BLE001 - the server redelivers after ack_wait
            log.warning("could not settle message: %s", exc)

    async def _dispatch(self, msg: Msg) -> Disposition:
        try:
            message = queue.decode(msg.data)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            return Term(f"not a queue message: {exc}")
        redelivered = msg.metadata.num_delivered > 1
        trace.get_current_span().set_attributes({"stoker.job_id": message.job_id,
                                                 "stoker.queue.kind": type(message).__name__})
        if isinstance(message, queue.JobMessage):
            return await self.runner.run(message.job_id, message.checkpoint, redelivered)
        return await self.webhooks.deliver(message.job_id)

    async def stop(self) -> None:
        """Stop fetching; let running messages finish for ``drain_s``, then hand them back."""
        self._stopping = True
        if self._loop is not None:
            self._loop.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop
        if self._tasks:
            _, pending = await asyncio.wait(list(self._tasks), timeout=self.drain_s)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=5.0)
        await self.runner.drain()
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()
