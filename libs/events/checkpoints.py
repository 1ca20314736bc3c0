"""Projector checkpoints: a view snapshot and the stream sequence it includes, saved atomically."""

from __future__ import annotations

from typing import Any, Generic, Protocol, TypeVar

import msgspec
from nats.js import JetStreamContext
from nats.js.errors import KeyNotFoundError

from . import codec, subjects

V = TypeVar("V")


class Checkpoint(msgspec.Struct, Generic[V], frozen=True):
    """The view after applying every message up to and including stream sequence ``seq``."""

    seq: int
    view: V


class Checkpoints(Protocol):
    """Where projectors keep their checkpoints."""

    async def load(self, name: str, view_type: Any) -> Checkpoint[Any] | None:
        """The last saved checkpoint of projector ``name``, or None."""
        ...

    async def save(self, name: str, checkpoint: Checkpoint[Any]) -> None:
        """Replace projector ``name``'s checkpoint."""
        ...


class MemoryCheckpoints:
    """In-memory checkpoints, for unit tests and throwaway projectors."""

    def __init__(self) -> None:
        self.saved: dict[str, bytes] = {}

    async def load(self, name: str, view_type: Any) -> Checkpoint[Any] | None:
        """The last saved checkpoint of projector ``name``, or None."""
        data = self.saved.get(name)
        return None if data is None else msgspec.json.decode(data, type=Checkpoint[view_type])

    async def save(self, name: str, checkpoint: Checkpoint[Any]) -> None:
        """Replace projector ``name``'s checkpoint."""
        self.saved[name] = codec.encode(checkpoint)


class KeyValueCheckpoints:
    """Checkpoints in a JetStream key-value bucket: one key per projector, one atomic put."""

    def __init__(self, js: JetStreamContext, bucket: str = subjects.CHECKPOINT_BUCKET) -> None:
        self._js = js
        self._bucket = bucket

    async def load(self, name: str, view_type: Any) -> Checkpoint[Any] | None:
        """The last saved checkpoint of projector ``name``, or None."""
        kv = await self._js.key_value(self._bucket)
        try:
            entry = await kv.get(name)
        except KeyNotFoundError:
            return None
        if not entry.value:
            return None
        return msgspec.json.decode(entry.value, type=Checkpoint[view_type])

    async def save(self, name: str, checkpoint: Checkpoint[Any]) -> None:
        """Replace projector ``name``'s checkpoint."""
        kv = await self._js.key_value(self._bucket)
        await kv.put(name, codec.encode(checkpoint))
