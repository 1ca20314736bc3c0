"""Heartbeats of joined boxes, in the NATS KV bucket ``stoker-agent-heartbeats`` (any replica writes, the leader reads)."""

from __future__ import annotations

import contextlib

from nats.js import JetStreamContext
from nats.js.errors import BucketNotFoundError, KeyNotFoundError, NoKeysError

from libs.events import subjects

BUCKET = subjects.HEARTBEAT_BUCKET


class Heartbeats:
    """Last heartbeat time (unix seconds) per node id."""

    def __init__(self, js: JetStreamContext, pool_id: str) -> None:
        self._js, self._prefix, self._kv = js, f"{pool_id}.", None

    async def _bucket(self):  # type: ignore[no-untyped-def]
        if self._kv is None:
            try:
                self._kv = await self._js.key_value(BUCKET)
            except BucketNotFoundError:
                self._kv = await self._js.create_key_value(bucket=BUCKET, history=1)
        return self._kv

    async def beat(self, node_id: str, at: float) -> None:
        """Record a heartbeat."""
        await (await self._bucket()).put(self._prefix + node_id, repr(at).encode())

    async def all(self) -> dict[str, float]:
        """Every node's last heartbeat."""
        kv = await self._bucket()
        try:
            keys = await kv.keys()
        except NoKeysError:
            return {}
        out: dict[str, float] = {}
        for key in keys:
            if not key.startswith(self._prefix):
                continue
            with contextlib.suppress(KeyNotFoundError, ValueError):
                entry = await kv.get(key)
                out[key[len(self._prefix):]] = float((entry.value or b"0").decode())
        return out
