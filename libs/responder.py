"""Serving a command subject: each request in its own task, inside a server span continuing the caller's trace."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Collection
from typing import Any

from nats.aio.msg import Msg
from opentelemetry.trace import SpanKind, StatusCode

from libs.events import codec
from libs.observability import tracing


def responder(service: str, command: str, answer: Callable[[Msg], Awaitable[Any]],
              inflight: set[asyncio.Task[None]], *, error_codes: Collection[str] = ("INTERNAL",)
              ) -> Callable[[Msg], Awaitable[None]]:
    """A NATS subscription callback: ``answer(msg)`` gives the reply (``ok``/``error``) sent back.

    Each request runs in its own task (kept in ``inflight`` until done) so one slow command does
    not queue the others. The span is named by ``command``, not the per-pool subject: few, stable
    names. Replies whose error code is in ``error_codes`` mark the span as an error.
    """

    async def respond(msg: Msg) -> None:
        with tracing.continued(service, command, headers=msg.headers, kind=SpanKind.SERVER,
                               attributes={"messaging.system": "nats",
                                           "messaging.destination.name": msg.subject}) as span:
            reply = await answer(msg)
            if reply.error is not None:
                span.set_attribute("stoker.error.code", reply.error.code)
                if reply.error.code in error_codes:
                    span.set_status(StatusCode.ERROR, reply.error.message)
            if msg.reply:
                with contextlib.suppress(Exception):  # the caller gave up or the connection closed
                    await msg.respond(codec.encode(reply))

    async def dispatch(msg: Msg) -> None:
        task = asyncio.create_task(respond(msg))
        inflight.add(task)
        task.add_done_callback(inflight.discard)

    return dispatch
