"""Run the audit service until SIGTERM or SIGINT, then drain."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from collections.abc import Mapping

from services.audit.app import AuditService
from services.audit.config import AuditConfig, ConfigError

log = logging.getLogger("stoker.audit")


async def serve(env: Mapping[str, str]) -> None:
    """Start the service, wait for a signal, stop it cleanly."""
    service = AuditService(AuditConfig.from_mapping(env))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await service.start()
    try:
        await stop.wait()
        log.info("audit shutting down")
    finally:
        await service.stop()


def main() -> None:
    """Entry point for `python -m services.audit`."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        asyncio.run(serve(os.environ))
    except ConfigError as exc:
        log.error("%s", exc)
        sys.exit(2)


if __name__ == "__main__":
    main()
