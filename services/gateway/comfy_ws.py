"""``WS /comfy/ws?clientId=``: ComfyUI's socket, fed from the live hub with the caller's own jobs.

Each socket is a live-hub client of its user, so it only ever receives that user's job
changes and progress. Execution frames of a prompt go only to the socket whose ``clientId``
the prompt was posted with (as ComfyUI does); ``status`` goes to all of the user's sockets.
Which client id a prompt was posted with is remembered by the replica that accepted it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import OrderedDict
from typing import Any

from aiohttp import WSMsgType, web
from nats.js import JetStreamContext

from libs.events import codec, subjects
from services.gateway import comfy_shapes as shapes
from services.gateway.auth import check_cookie_origin
from services.gateway.errors import ApiError
from services.gateway.gen_reads import GenReads
from services.gateway.live import CLOSE, RESYNC, Message
from services.gateway.resources import COMFY_CLIENTS, CONFIG, GEN_READS, HUB, JS
from services.gateway.routing import Call
from services.generation.domain import Job

log = logging.getLogger("stoker.gateway")

BINDINGS = 50_000
HEARTBEAT_S = 30.0
TEXT_LIMIT = 64 * 1024
FEATURES = {"supports_preview_metadata": False, "max_upload_size": 0}  # Stoker sends no previews, takes no uploads


class ComfyClients:
    """Which ComfyUI client id each job's prompt was posted with (bounded; the oldest are forgotten)."""

    def __init__(self, limit: int = BINDINGS) -> None:
        self._limit = limit
        self._by_job: OrderedDict[str, str] = OrderedDict()

    def bind(self, job_id: str, client_id: str) -> None:
        """Remember the client of a job."""
        self._by_job[job_id] = client_id
        self._by_job.move_to_end(job_id)
        while len(self._by_job) > self._limit:
            self._by_job.popitem(last=False)

    def client_of(self, job_id: str) -> str | None:
        """The client id a job was posted with, if this replica took it."""
        return self._by_job.get(job_id)


def queue_remaining(reads: GenReads, user_id: str) -> int:
    """The user's queued and running jobs."""
    view = reads.jobs
    return sum(1 for j in (*view.queued, *view.running) if (job := view.jobs.get(j)) is not None
               and job.user_id == user_id)


async def texts_of(js: JetStreamContext, job: Job) -> dict[str, str]:
    """The text of the job's text outputs (object name -> text, at most ``TEXT_LIMIT`` bytes each)."""
    out: dict[str, str] = {}
    names = [o.object_name for o in shapes.live_outputs(job) if shapes.kind_of(o.content_type) == "text"]
    if not names:
        return out
    with contextlib.suppress(Exception):
        store = await js.object_store(subjects.OUTPUT_BUCKET)
        for name in names:
            with contextlib.suppress(Exception):
                result = await store.get(name)
                out[name] = bytes(result.data or b"")[:TEXT_LIMIT].decode("utf-8", "replace")
    return out


class Session:
    """One socket's view of the stream: turns hub messages into ComfyUI frames."""

    def __init__(self, app: web.Application, sid: str, user_id: str | None) -> None:
        self.app, self.sid, self.user_id = app, sid, user_id
        self.reads = app[GEN_READS]
        self.clients = app[COMFY_CLIENTS]
        self.ended: set[str] = set()

    def _mine(self, job_id: str) -> Job | None:
        job = self.reads.jobs.jobs.get(job_id)
        return job if job is not None and job.user_id == self.user_id else None

    def status(self) -> dict[str, Any]:
        """The ``status`` frame for this user now."""
        return shapes.status_frame(queue_remaining(self.reads, self.user_id) if self.user_id else 0)

    def greeting(self) -> dict[str, Any]:
        """The first frame: ``status`` with the socket's id."""
        return shapes.status_frame(queue_remaining(self.reads, self.user_id) if self.user_id else 0, self.sid)

    async def frames(self, message: Message) -> list[dict[str, Any]]:
        """The frames one hub message means for this socket (often none)."""
        job_id = message.data.get("job_id")
        if message.kind not in ("job", "progress") or not isinstance(job_id, str):
            return []
        job = self._mine(job_id)
        if job is None:
            return []
        ours = self.clients.client_of(job_id) == self.sid
        if message.kind == "progress":
            if not ours or job_id in self.ended:
                return []
            d = message.data
            return shapes.progress_frames(shapes.prompt_id_of(job), d["kind"], d.get("node"), d.get("step"),
                                          d.get("max"), int(time.time() * 1000))
        event = message.data.get("type")
        if event in ("GenerationCompleted", "GenerationFailed") and job.terminal and job_id not in self.ended:
            self.ended.add(job_id)
            if not ours:
                return [self.status()]
            return shapes.end_frames(job, await texts_of(self.app[JS], job),
                                     queue_remaining(self.reads, job.user_id))
        if event in ("GenerationRequested", "GenerationClaimed"):
            return [self.status()]
        return []


async def websocket(call: Call) -> Any:
    """ComfyUI's socket: ``status`` first, then the frames of the caller's prompts posted with this ``clientId``."""
    request = call.request
    check_cookie_origin(request, call.app[CONFIG].cors_origins, reads_too=True)  # no foreign page with our cookie
    ws = web.WebSocketResponse(heartbeat=HEARTBEAT_S, max_msg_size=64 * 1024)
    if not ws.can_prepare(request).ok:
        raise ApiError(400, "BAD_REQUEST", "this is a WebSocket endpoint: connect with an Upgrade request")
    sid = call.query.clientId or uuid.uuid4().hex
    session = Session(call.app, sid, call.who.user_id)
    hub = call.app[HUB]
    client = hub.subscribe(call.who.user_id, False)  # a socket sees its user's jobs only, admins included
    reader: asyncio.Task[None] | None = None
    try:
        await ws.prepare(request)
        await ws.send_str(codec.encode(session.greeting()).decode())
        reader = asyncio.create_task(_read(ws))
        while not ws.closed:
            getter = asyncio.ensure_future(client.queue.get())
            done, _ = await asyncio.wait({getter, reader}, return_when=asyncio.FIRST_COMPLETED)
            if getter not in done:
                getter.cancel()
                break
            item = getter.result()
            if item == CLOSE:
                break
            out = [session.status()] if item == RESYNC else await session.frames(item)  # type: ignore[arg-type]
            for f in out:
                await ws.send_str(codec.encode(f).decode())
    except (ConnectionResetError, ConnectionError):
        pass  # the client went away
    finally:
        hub.unsubscribe(client)
        if reader is not None:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reader
        with contextlib.suppress(Exception):
            await ws.close()
    return ws


async def _read(ws: web.WebSocketResponse) -> None:
    """Read the client's messages until it closes: answer ``feature_flags``, ignore the rest (as ComfyUI does)."""
    async for msg in ws:
        if msg.type != WSMsgType.TEXT:
            continue
        try:
            data = codec.loads(msg.data.encode())
        except (ValueError, RecursionError):  # not JSON, or nested too deep: ignored like any other message
            continue
        if isinstance(data, dict) and data.get("type") == "feature_flags":
            await ws.send_str(codec.encode(shapes.frame("feature_flags", FEATURES)).decode())
