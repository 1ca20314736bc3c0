"""Run the pool service: ``python -m services.pool``."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys

from libs.observability import logs, tracing

from .app import run


async def main() -> None:
    """Run until SIGINT or SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await run(os.environ, stop)


if __name__ == "__main__":
    # JSON lines (text in dev mode) with trace ids; keys and tokens of the environment masked.
    # httpx's one line per provider request is quieted there: our own logs say what matters.
    logs.setup_logging("pool", os.environ)
    tracing.setup_tracing("pool", os.environ)
    try:
        asyncio.run(main())
    except Exception:  # a bad configuration, most often: one log line, not a bare traceback
        logging.getLogger("stoker.pool").exception("pool service stopped by an error")
        sys.exit(1)
    finally:
        tracing.shutdown_tracing()
