"""A read-only audit replica: answers ``cmd.audit.<chain>.query`` only, beside the writer, in its queue group.

It holds no key (verification stays with the writer, one at a time) and needs only a database role
that may read the audit tables. Run with ``AUDIT_READ_ONLY=1 python -m services.audit``; settings:
``NATS_URL``, ``DATABASE_URL`` (a read-only role) and ``AUDIT_CHAIN`` (default ``main``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping

import asyncpg
from nats.aio.client import Client as NatsClient

from libs import natsconn
from libs.contracts.audit import DEFAULT_CHAIN
from libs.events.ids import is_subject_token
from services.audit import repository
from services.audit.config import ConfigError
from services.audit.reads import AuditReads

log = logging.getLogger("stoker.audit")


class AuditReader:
    """Connect, open a small pool, answer queries; ``stop`` unsubscribes and closes both."""

    def __init__(self, env: Mapping[str, str]) -> None:
        missing = [name for name in ("NATS_URL", "DATABASE_URL") if not env.get(name)]
        if missing:
            raise ConfigError(f"missing configuration: {', '.join(missing)}")
        self.chain = env.get("AUDIT_CHAIN") or DEFAULT_CHAIN
        if not is_subject_token(self.chain):
            raise ConfigError(f"AUDIT_CHAIN {self.chain!r} cannot be a subject token")
        self._env = env
        self.nc: NatsClient | None = None
        self.pool: asyncpg.Pool | None = None
        self.reads: AuditReads | None = None

    async def start(self) -> None:
        """Connect to NATS and PostgreSQL and start answering queries."""
        self.nc = await natsconn.connect(self._env["NATS_URL"], env=self._env, name="stoker-audit-reader",
                                         max_reconnect_attempts=-1, reconnect_time_wait=0.5)
        self.pool = await repository.create_pool(self._env["DATABASE_URL"], None, max_size=2)
        self.reads = AuditReads(self.nc, self.nc.jetstream(timeout=10), self.pool, self.chain)
        await self.reads.start()
        log.info("audit reader answering queries on chain %r", self.chain)

    async def stop(self) -> None:
        """Stop answering, then close the pool and the connection."""
        if self.reads is not None:
            await self.reads.stop()
        if self.pool is not None:
            try:
                await asyncio.wait_for(self.pool.close(), 5)
            except (TimeoutError, Exception):
                self.pool.terminate()
        if self.nc is not None:
            await self.nc.close()
