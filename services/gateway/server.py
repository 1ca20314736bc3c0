"""Serving the app on a socket, guarded against slow and idle connections.

- A request head must arrive within ``header_timeout_s`` (aiohttp's keep-alive timer runs from the
  connection's start and closes a connection still waiting for a complete head); a body must arrive
  within ``body_timeout_s`` (``routing._parse_body``; 408 otherwise).
- At most ``max_connections`` are open: a new connection beyond it closes the oldest connection
  that is not in the middle of a request (an idle or half-sent one), so a flood of idle sockets
  cannot starve real clients or ``/healthz``; when every connection is busy the new one is closed.
  Between the kernel's accept and this check a connection holds a descriptor; the listen backlog
  and the descriptor limit (raised to fit the cap) bound that.
- Accept errors (out of file descriptors) are logged once per interval, with a count, not once
  per attempt with a traceback.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import resource
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Middleware
from aiohttp.web_protocol import RequestHandler

from services.gateway.config import GatewayConfig

log = logging.getLogger("stoker.gateway")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
FD_MARGIN = 256  # descriptors kept for PostgreSQL, NATS, files and the process itself
RESOURCE_ERRNOS = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}
LOG_EVERY_S = 10.0


class ConnectionGuard:
    """Tracks which connections are inside a request; evicts the oldest other one when full."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.busy: dict[RequestHandler, int] = {}
        self.evicted = 0
        self.refused = 0

    def middleware(self) -> Middleware:
        """Mark a connection busy while one of its requests is being handled (streams included)."""

        @web.middleware
        async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
            proto = request.protocol
            self.busy[proto] = self.busy.get(proto, 0) + 1
            try:
                return await handler(request)
            finally:
                left = self.busy.get(proto, 1) - 1
                if left > 0:
                    self.busy[proto] = left
                else:
                    self.busy.pop(proto, None)

        return middleware

    def admit(self, new: RequestHandler, connections: list[RequestHandler]) -> None:
        """A connection was just made: over the cap, close the oldest idle one, or this one if all are busy."""
        open_ = [c for c in connections if c.transport is not None]  # closed ones linger until their task ends
        if len(open_) <= self.limit:
            return
        for old in open_:  # in the order they connected
            if old is not new and old not in self.busy:
                old.force_close()
                self.evicted += 1
                return
        new.force_close()
        self.refused += 1


class GuardedSite(web.TCPSite):
    """A TCP site whose connections go through a ConnectionGuard."""

    def __init__(self, runner: web.AppRunner, host: str, port: int, guard: ConnectionGuard, **kwargs: Any) -> None:
        super().__init__(runner, host, port, **kwargs)
        self._guard = guard

    async def start(self) -> None:
        """Listen; each connection, once made, is admitted under the cap."""
        server = self._runner.server
        assert server is not None
        guard, made = self._guard, server.connection_made

        # Counted when made, not when accepted: asyncio accepts a whole backlog before any is made.
        def connection_made(handler: RequestHandler, transport: asyncio.Transport) -> None:
            made(handler, transport)
            guard.admit(handler, server.connections)

        server.connection_made = connection_made  # type: ignore[method-assign]
        await super().start()


def connection_limit(wanted: int) -> int:
    """``wanted``, raising the soft file-descriptor limit to fit it if allowed, else what fits."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = wanted + FD_MARGIN
    if soft != resource.RLIM_INFINITY and soft < need:
        target = need if hard == resource.RLIM_INFINITY else min(need, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    if soft != resource.RLIM_INFINITY and soft < need:
        fitted = max(10, soft - FD_MARGIN)
        log.warning("only %d file descriptors: at most %d connections instead of %d", soft, fitted, wanted)
        return fitted
    return wanted


class AcceptErrorLog:
    """An event-loop exception handler that logs resource exhaustion once per interval, with a count."""

    def __init__(self, every_s: float = LOG_EVERY_S, clock: Callable[[], float] = time.monotonic) -> None:
        self.every_s, self.clock = every_s, clock
        self.suppressed = 0
        self.last = float("-inf")

    def __call__(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        if not (isinstance(exc, OSError) and exc.errno in RESOURCE_ERRNOS):
            loop.default_exception_handler(context)
            return
        now = self.clock()
        if now - self.last < self.every_s:
            self.suppressed += 1
            return
        log.error("%s: %s (%d more like it since the last report)", context.get("message", "out of resources"),
                  exc.strerror or type(exc).__name__, self.suppressed)
        self.last, self.suppressed = now, 0


def make_runner(app: web.Application, config: GatewayConfig) -> tuple[web.AppRunner, ConnectionGuard]:
    """The app's runner with the head timeout, and the guard its site and middleware share."""
    guard = ConnectionGuard(connection_limit(config.max_connections))
    app.middlewares.insert(0, guard.middleware())
    # Finish in-flight requests within 5 s: well inside the supervisor's 10 s before SIGKILL.
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=5.0, keepalive_timeout=config.header_timeout_s)
    return runner, guard

