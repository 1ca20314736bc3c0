"""Failing fast when PostgreSQL or NATS is away: bounded calls, a health flag, and the 503 they become.

A frozen PostgreSQL does not refuse connections, it just never answers; a cancelled asyncpg query
can then take as long as its command timeout to clean up. So a call is bounded by *not waiting*
for it past its deadline (it finishes, or fails, in the background) rather than by cancelling it
and waiting for the cancellation. A bounded call that times out marks the database unhealthy; a
watchdog probe marks it healthy again, and requests that need it get 503 at once meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

log = logging.getLogger("stoker.gateway")

T = TypeVar("T")
_background: set[asyncio.Future[Any]] = set()  # calls past their deadline, kept until they end


class Unavailable(Exception):
    """A dependency (``what``: "postgres", "nats") is not answering."""

    def __init__(self, what: str) -> None:
        super().__init__(f"{what} is unavailable")
        self.what = what


def _forget(fut: asyncio.Future[Any]) -> None:
    _background.discard(fut)
    if not fut.cancelled():
        fut.exception()  # retrieved: a late failure is expected, not "never retrieved"


async def bounded(call: Awaitable[T], timeout: float) -> T:
    """``await call``, but give up (TimeoutError) after ``timeout`` without waiting for it to clean up."""
    fut = asyncio.ensure_future(call)
    done, _ = await asyncio.wait({fut}, timeout=timeout)
    if fut in done:
        return fut.result()
    fut.cancel()
    _background.add(fut)
    fut.add_done_callback(_forget)
    raise TimeoutError


async def watch(probe: Callable[[], Awaitable[Any]], set_healthy: Callable[[bool], None], *, timeout: float,
                every: float = 1.0) -> None:
    """Probe a dependency forever (bounded each time) and report whether it answers."""
    while True:
        try:
            await bounded(probe(), timeout)
            set_healthy(True)
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 -- any failure of the probe means "not answering"
            set_healthy(False)
        await asyncio.sleep(every)
