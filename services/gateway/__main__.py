"""Run the gateway on STOKER_GATEWAY_HOST:STOKER_GATEWAY_PORT until SIGTERM or SIGINT."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Mapping

from libs.observability import logs, tracing
from services.gateway import server
from services.gateway.app import CONFIG, create_app
from services.gateway.config import ConfigError, GatewayConfig

log = logging.getLogger("stoker.gateway")


async def serve(env: Mapping[str, str]) -> None:
    """Serve until a signal, then stop accepting, finish requests and drain NATS."""
    problem = GatewayConfig.from_mapping(env).startup_problem()
    if problem:
        raise ConfigError(f"{problem}: refusing to start outside dev mode (set STOKER_DEV=1 for development)")
    app = create_app(env)
    config = app[CONFIG]
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(server.AcceptErrorLog())
    runner, guard = server.make_runner(app, config)
    await runner.setup()
    try:
        await server.GuardedSite(runner, config.host, config.port, guard, backlog=1024).start()
        log.info("gateway listening on http://%s:%s/ (at most %d connections)", config.host, config.port, guard.limit)
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        log.info("gateway shutting down")
    finally:
        await runner.cleanup()


def main() -> None:
    """Entry point for `python -m services.gateway`."""
    logs.setup_logging("gateway", os.environ)
    tracing.setup_tracing("gateway", os.environ)
    try:
        asyncio.run(serve(os.environ))
    except ConfigError as exc:
        log.error("%s", exc)
        raise SystemExit(2) from None
    finally:
        tracing.shutdown_tracing()


if __name__ == "__main__":
    main()
