"""Single active reconciler: a lease in a JetStream key-value bucket with a TTL."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig, StorageType
from nats.js.errors import BadRequestError, KeyWrongLastSequenceError, NotFoundError
from nats.js.kv import KeyValue

from libs.events import subjects

log = logging.getLogger(__name__)


class LeaderLease:
    """Holds ``key`` while alive; another replica takes over within ``ttl`` after it dies."""

    def __init__(self, js: JetStreamContext, key: str, holder: str, ttl: float = 5.0) -> None:
        self._js = js
        self._key = key
        self.holder = holder
        self._ttl = ttl
        self._kv: KeyValue | None = None
        self._revision: int | None = None
        self.is_leader = False
        self.changed = asyncio.Event()

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
        kv = await self._bucket()
        try:
            if self.is_leader and self._revision is not None:
                self._revision = await kv.update(self._key, self.holder.encode(), last=self._revision)
            else:
                self._revision = await kv.create(self._key, self.holder.encode())
            self._set(True)
        except (KeyWrongLastSequenceError, BadRequestError) as exc:
            if self.is_leader:
                log.warning("lost the reconciler lease %s: %s", self._key, exc)
            self._revision = None
            self._set(False)
        except Exception as exc:  # NATS unavailable: we cannot prove we lead
            if self.is_leader:
                log.warning("cannot refresh the reconciler lease: %s", exc)
            self._set(False)
        return self.is_leader

    def _set(self, leading: bool) -> None:
        if leading != self.is_leader:
            log.info("%s %s the reconciler lease %s", self.holder, "took" if leading else "lost", self._key)
            self.is_leader = leading
            self.changed.set()

    async def run(self) -> None:
        """Tick every ttl/3 until cancelled."""
        while True:
            await self.tick()
            await asyncio.sleep(self._ttl / 3)

    async def release(self) -> None:
        """Give the lease up (on clean shutdown) so another replica takes over at once."""
        if self.is_leader and self._kv is not None and self._revision is not None:
            with contextlib.suppress(Exception):
                await self._kv.delete(self._key, last=self._revision)
        self._set(False)
