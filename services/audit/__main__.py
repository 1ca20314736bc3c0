"""Run the audit service until SIGTERM or SIGINT, then drain."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from collections.abc import Mapping

from libs.observability import logs, metrics, tracing
from services.audit.app import AuditService
from services.audit.config import AuditConfig, ConfigError
from services.audit.reader import AuditReader

log = logging.getLogger("stoker.audit")


async def serve(env: Mapping[str, str]) -> None:
    """Start the service (or, with AUDIT_READ_ONLY=1, a query-only replica), wait for a signal, stop it cleanly."""
    read_only = env.get("AUDIT_READ_ONLY", "").strip().lower() in ("1", "true", "yes", "on")
    service = AuditReader(env) if read_only else AuditService(AuditConfig.from_mapping(env))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await service.start()
    exposition = None if read_only else await metrics.serve_from_env(service.metrics.registry, env)
    try:
        await stop.wait()
        log.info("audit shutting down")
    finally:
        if exposition is not None:
            await exposition.cleanup()
        await service.stop()


def main() -> None:
    """Entry point for `python -m services.audit`."""
    logs.setup_logging("audit", os.environ)  # JSON lines with trace ids, keys of the environment masked
    tracing.setup_tracing("audit", os.environ)
    try:
        asyncio.run(serve(os.environ))
    except ConfigError as exc:
        log.error("%s", exc)
        sys.exit(2)
    finally:
        tracing.shutdown_tracing()


if __name__ == "__main__":
    main()
