"""Run a generation replica (API responder + job worker): ``python -m services.generation``.

Environment (all optional):

| variable | default | meaning |
|---|---|---|
| NATS_URL | nats://127.0.0.1:4222 | NATS with JetStream |
| STOKER_POOL_ID | default | the pool whose instances jobs run on |
| STOKER_GEN_CONCURRENCY | 4 | jobs (and webhook deliveries) one worker runs at once |
| STOKER_GEN_WORKER | 1 | 0: answer the API only, run no jobs |
| STOKER_GEN_ACK_WAIT | 5 | seconds before a dead worker's job is redelivered (running jobs send `in_progress` every third) |
| STOKER_GEN_JOB_TIMEOUT | 1800 | seconds an attempt may run before it is interrupted |
| STOKER_GEN_LOST_AFTER | 30 | seconds a host may not answer before its instance counts as lost |
| STOKER_GEN_MAX_ATTEMPTS | 3 | instances a job may lose before it fails |
| STOKER_GEN_LEASE | 30 | claim lease seconds (renewed every third): how long a dead worker's instance stays held |
| STOKER_GEN_CLAIM_WAIT | 5 | seconds a worker waits for a free instance before requeueing |
| STOKER_GEN_AUTOSCALE | 1 | ask the pool for instances (prewarm, within max_size) when jobs wait |
| STOKER_GEN_DEFAULT_CHECKPOINT | first the pool offers | checkpoint of templates when none is given |
| STOKER_GEN_SECONDS_PER_UNIT / _OVERHEAD / _DEFAULT_DPH | 0.05 / 3 / 0.5 | cost estimate model |
| STOKER_WEBHOOK_SECRET | random, kept in KV | master key user webhook keys derive from |
| STOKER_WEBHOOK_ATTEMPTS / _BACKOFF / _BACKOFF_MAX / _TIMEOUT | 8 / 2 / 3600 / 10 | delivery policy |
| STOKER_WEBHOOK_ALLOW_PRIVATE | STOKER_DEV | allow webhooks to loopback/private addresses |
| STOKER_LOG_LEVEL | INFO | logging level |
| STOKER_LOG_FORMAT | json (text with STOKER_DEV) | log lines as JSON objects or plain text |
| STOKER_METRICS_PORT | off | serve Prometheus ``/metrics`` on this port (``STOKER_METRICS_HOST``, 0.0.0.0) |
| OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_TRACES_EXPORTER... | off | export traces with OTLP/HTTP |
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys

from libs.observability import logs, tracing

from .app import run
from .config import ConfigError


async def main() -> None:
    """Run until SIGINT or SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await run(os.environ, stop)


if __name__ == "__main__":
    logs.setup_logging("generation", os.environ)  # JSON lines with trace ids, secrets of the environment masked
    tracing.setup_tracing("generation", os.environ)
    try:
        asyncio.run(main())
    except ConfigError as exc:
        logging.getLogger("stoker.generation").error("generation: %s", exc)
        sys.exit(2)
    finally:
        tracing.shutdown_tracing()
