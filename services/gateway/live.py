"""Live updates: the projectors' listeners fan pool changes and job progress out to connected clients.

Each client has a bounded queue; a client too slow to keep up is not allowed to grow memory:
its queue is cleared and it gets a fresh snapshot instead (``resync``). Job changes and
progress are published with an owner, so a user only receives their own jobs (admins: all).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

import msgspec

from libs.events import Recorded, codec
from libs.events import pool as ev
from services.gateway.gen_views import generation_of_job
from services.generation import api as gen_api
from services.generation.domain import Job
from services.pool.handlers import summary
from services.pool.view import PoolView

log = logging.getLogger("stoker.gateway")

QUEUE_SIZE = 256
RESYNC = "resync"
CLOSE = "close"
ADMIN_ONLY_FIELDS = ("base_url", "provider_id", "host_id", "lease_holder", "lease_expires_at", "ssh_host", "ssh_port",
                     "last_probe_error", "logs_url")


@dataclass(frozen=True, slots=True)
class Message:
    """One server-sent event: kind, JSON data, id (a stream sequence); ``owner`` limits who receives it."""

    kind: str
    data: dict[str, Any]
    id: int | None = None
    owner: str | None = None  # a user id: only that user (and admins) receive it


@dataclass(eq=False)
class Client:
    """One connected SSE client."""

    user_id: str | None
    is_admin: bool
    queue: asyncio.Queue[Message | str] = field(default_factory=lambda: asyncio.Queue(QUEUE_SIZE))


def redact_instance(row: dict[str, Any]) -> dict[str, Any]:
    """An instance row for a non-admin: where it runs and who holds it are admin business."""
    return {k: (None if k in ADMIN_ONLY_FIELDS else v) for k, v in row.items()}


def redact_summary(data: dict[str, Any]) -> dict[str, Any]:
    """The pool summary for a non-admin."""
    out = dict(data)
    out["instances"] = [redact_instance(row) for row in data["instances"]]
    out["avoided_hosts"] = []
    return out


def encode_sse(message: Message) -> bytes:
    """The wire form of one event."""
    head = f"id: {message.id}\n" if message.id is not None else ""
    return f"{head}event: {message.kind}\ndata: ".encode() + codec.encode(message.data) + b"\n\n"


class LiveHub:
    """Fans messages out to connected clients."""

    def __init__(self) -> None:
        self.clients: set[Client] = set()
        self.dropped = 0

    def subscribe(self, user_id: str | None, is_admin: bool) -> Client:
        """Register a client."""
        client = Client(user_id, is_admin)
        self.clients.add(client)
        return client

    def unsubscribe(self, client: Client) -> None:
        """Forget a client."""
        self.clients.discard(client)

    def publish(self, message: Message) -> None:
        """Queue a message for every client allowed to see it (never blocks)."""
        for client in self.clients:
            if message.owner is not None and not client.is_admin and client.user_id != message.owner:
                continue
            try:
                client.queue.put_nowait(message)
            except asyncio.QueueFull:
                self.dropped += 1
                while not client.queue.empty():
                    client.queue.get_nowait()
                client.queue.put_nowait(RESYNC)

    def close(self) -> None:
        """Tell every client to finish (shutdown)."""
        for client in self.clients:
            while not client.queue.empty():
                client.queue.get_nowait()
            client.queue.put_nowait(CLOSE)

    def on_pool_event(self, view: PoolView, rec: Recorded) -> None:
        """Projector listener: publish what changed (the instance's dashboard row, or the pool's settings)."""
        if not self.clients or getattr(rec.event, "pool_id", view.pool_id) != view.pool_id:
            return
        env = rec.envelope
        data: dict[str, Any] = {"seq": rec.seq, "type": type(rec.event).__name__, "aggregate_type": env.aggregate_type,
                                "aggregate_id": env.aggregate_id, "occurred_at": env.occurred_at.isoformat()}
        if env.aggregate_type == ev.INSTANCE and env.aggregate_id in view.instances:
            one = msgspec.structs.replace(view, instances={env.aggregate_id: view.instances[env.aggregate_id]})
            data["instance"] = summary(one, env.occurred_at)["instances"][0]
        else:
            data["safe_mode"] = view.safe_mode
            data["config"] = msgspec.to_builtins(view.config)
            data["problems"] = summary(view, env.occurred_at)["problems"] if view.problems else []
        self.publish(Message("pool", data, rec.seq))

    def on_job_event(self, job: Job, rec: Recorded) -> None:
        """Generation listener: the job's new state, to its owner (``job`` event)."""
        if not self.clients:
            return
        data = {"seq": rec.seq, "type": type(rec.event).__name__, "job_id": job.id, "status": job.status,
                "occurred_at": rec.envelope.occurred_at.isoformat(),
                "generation": codec.to_builtins(generation_of_job(job))}
        self.publish(Message("job", data, owner=job.user_id))

    def on_progress(self, progress: gen_api.Progress, job: Job) -> None:
        """Progress listener: one step of a running job, to its owner (``progress`` event)."""
        if not self.clients:
            return
        data = {"job_id": progress.job_id, "seq": progress.seq, "kind": progress.kind, "attempt": progress.attempt,
                "node": progress.node, "node_type": progress.node_type, "step": progress.step, "max": progress.max}
        self.publish(Message("progress", data, owner=job.user_id))
