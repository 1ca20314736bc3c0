"""Live updates by Server-Sent Events: a snapshot, then every pool change and your jobs' changes and progress."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from aiohttp import web

from services.gateway.auth import check_cookie_origin
from services.gateway.live import (
    CLOSE,
    RESYNC,
    Message,
    encode_sse,
    redact_instance,
    redact_summary,
)
from services.gateway.resources import CONFIG, HUB, POOL_READS
from services.gateway.routing import Call, Operation
from services.gateway.security import prepare_headers

KEEPALIVE_S = 15.0


def _snapshot(call: Call) -> Message:
    reads = call.app[POOL_READS]
    data = reads.summary()
    return Message("snapshot", data if call.who.is_admin else redact_summary(data), reads.projector.seq)


def _for(call: Call, message: Message) -> Message:
    instance = message.data.get("instance")
    if instance is None or call.who.is_admin:
        return message
    return Message(message.kind, {**message.data, "instance": redact_instance(instance)}, message.id)


async def stream(call: Call) -> Any:
    """``snapshot`` first (the pool as GET /api/v1/pool shows it), then ``pool`` events; comments keep it alive."""
    request = call.request
    check_cookie_origin(request, call.app[CONFIG].cors_origins, reads_too=True)  # no foreign page with our cookie
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store",
                                           "X-Accel-Buffering": "no"})
    prepare_headers(request, response, call.app[CONFIG].cors_origins)
    hub = call.app[HUB]
    client = hub.subscribe(call.who.user_id, call.who.is_admin)
    try:
        await response.prepare(request)
        await response.write(b"retry: 2000\n\n" + encode_sse(_snapshot(call)))
        while True:
            try:
                item = await asyncio.wait_for(client.queue.get(), KEEPALIVE_S)
            except TimeoutError:
                await response.write(b": keepalive\n\n")
                continue
            if item == CLOSE:
                break
            message = _snapshot(call) if item == RESYNC else _for(call, item)  # type: ignore[arg-type]
            await response.write(encode_sse(message))
    except (ConnectionResetError, ConnectionError):
        pass  # the client went away
    finally:
        hub.unsubscribe(client)
    with contextlib.suppress(Exception):
        await response.write_eof()
    return response


OPERATIONS = [
    Operation("GET", "/api/v1/stream", stream, "stream", "Live updates (Server-Sent Events)", "live",
              media_type="text/event-stream",
              description="Events: `snapshot` (the pool summary), then `pool` (one change: the event and the "
                          "instance's row), `job` (one of your generations changed: the event type and the "
                          "generation as GET /api/v1/generations/{id} shows it) and `progress` (a step of your "
                          "running generation: kind, node, step of max). Admins get every user's jobs. Comment "
                          "lines keep the connection alive."),
]
