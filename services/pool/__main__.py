"""Run the pool service: ``python -m services.pool``."""

from __future__ import annotations

import asyncio
import logging
import os
import signal

from .app import run


async def main() -> None:
    """Run until SIGINT or SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await run(os.environ, stop)


if __name__ == "__main__":
    logging.basicConfig(level=os.environ.get("STOKER_LOG_LEVEL", "INFO"),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # One line per provider HTTP request is noise at INFO; our own logs say what matters.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    asyncio.run(main())
