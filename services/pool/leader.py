"""Single active reconciler: a lease in a JetStream key-value bucket with a TTL.

While NATS is away the holder keeps leading until the TTL after its last successful refresh has
passed: no other replica can take the key before it expires (the server's clock starts later than
ours), and the pool's safety actions (safe mode, terminations) keep running from its last known state.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig, StorageType
from nats.js.errors import BadRequestError, KeyWrongLastSequenceError, NotFoundError
from nats.js.kv import KeyValue

from libs.events import subjects

log = logging.getLogger(__name__)


class LeaderLease:
    """Holds ``key`` while alive; another replica takes over within ``ttl`` after it dies."""

    def __init__(self, js: JetStreamContext, key: str, holder: str, ttl: float = 5.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._js = js
        self._clock = clock
        self._valid_until = 0.0  # our clock: the lease cannot have expired on the server before this
        self._key = key
        self.holder = holder
        self._ttl = ttl
        self._kv: KeyValue | None = None
        self._revision: int | None = None
        self._leading = False
        self.changed = asyncio.Event()

    @property
    def is_leader(self) -> bool:
        """Whether we hold the lease: refreshed, and not older than the TTL (even while NATS is away)."""
        return self._leading and self._clock() < self._valid_until

    async def _bucket(self) -> KeyValue:
        if self._kv is None:
            try:
                self._kv = await self._js.key_value(subjects.LEASE_BUCKET)
            except NotFoundError:
                with contextlib.suppress(BadRequestError):
                    await self._js.create_key_value(KeyValueConfig(
                        bucket=subjects.LEASE_BUCKET, history=1, ttl=self._ttl, storage=StorageType.FILE))
                self._kv = await self._js.key_value(subjects.LEASE_BUCKET)
        return self._kv

    async def tick(self) -> bool:
        """Acquire or refresh the lease once; return whether we lead now."""
        sent = self._clock()
        try:
            kv = await self._bucket()
            if self._leading and self._revision is not None:
                self._revision = await kv.update(self._key, self.holder.encode(), last=self._revision)
            else:
                self._revision = await kv.create(self._key, self.holder.encode())
            self._valid_until = sent + self._ttl
            self._set(True)
        except (KeyWrongLastSequenceError, BadRequestError) as exc:
            if self._leading:
                log.warning("lost the reconciler lease %s: %s", self._key, exc)
            self._revision = None
            self._set(False)
        except Exception as exc:  # NATS unavailable: we lead until the lease could have expired
            if self.is_leader:
                log.warning("cannot refresh the reconciler lease (%s); still leading for %.1fs", type(exc).__name__,
                            self._valid_until - self._clock())
            else:
                if self._leading:
                    log.warning("cannot refresh the reconciler lease: %s", exc)
                self._set(False)
        return self.is_leader

    def _set(self, leading: bool) -> None:
        if leading != self._leading:
            log.info("%s %s the reconciler lease %s", self.holder, "took" if leading else "lost", self._key)
            self._leading = leading
            self.changed.set()

    async def run(self) -> None:
        """Tick every ttl/3 until cancelled."""
        while True:
            await self.tick()
            await asyncio.sleep(self._ttl / 3)

    async def release(self) -> None:
        """Give the lease up (on clean shutdown) so another replica takes over at once."""
        if self._leading and self._kv is not None and self._revision is not None:
            with contextlib.suppress(Exception):
                await self._kv.delete(self._key, last=self._revision)
        self._set(False)
