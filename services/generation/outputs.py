"""Where output bytes live: the JetStream object store (port, adapter, in-memory fake, naming).

Object names: ``gen/<user_id>/<job_id>/<nn>-<filename>`` (nn = output index, two digits),
so a user's objects share the prefix ``gen/<user_id>/`` and an output names its job.
"""

from __future__ import annotations

import hashlib
import mimetypes
from typing import NamedTuple, Protocol

from nats.js import JetStreamContext
from nats.js.api import ObjectMeta, StorageType
from nats.js.errors import (
    BadRequestError,
    BucketNotFoundError,
    NotFoundError,
    ObjectNotFoundError,
)
from nats.js.object_store import ObjectStore
from opentelemetry.trace import SpanKind

from libs.events import subjects
from libs.observability import tracing

from .templates import user_prefix

mimetypes.add_type("image/webp", ".webp")


class Stored(NamedTuple):
    """What was stored: size and sha256 (hex) of the bytes."""

    size: int
    sha256: str


class Objects(Protocol):
    """Output storage."""

    async def put(self, name: str, data: bytes, content_type: str) -> Stored:
        """Store (or overwrite, same bytes on a retry) one object."""
        ...

    async def get(self, name: str) -> bytes | None:
        """The object's bytes, or None."""
        ...

    async def delete(self, name: str) -> None:
        """Remove one object (no error when missing)."""
        ...


def object_name(user_id: str, job_id: str, index: int, filename: str) -> str:
    """The object name of a job's ``index``-th output."""
    safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in filename.rsplit("/", 1)[-1]) or "output"
    return f"{user_prefix(user_id)}{job_id}/{index:02d}-{safe}"


def job_of(object_name_: str) -> str | None:
    """The job id an output object belongs to (None for other names)."""
    parts = object_name_.split("/")
    return parts[2] if len(parts) == 4 and parts[0] == "gen" and parts[2] else None


def content_type(filename: str) -> str:
    """MIME type from the file name."""
    return mimetypes.guess_type(filename)[0] or "application/octet-stream"


def digest(data: bytes) -> Stored:
    """Size and sha256 of bytes."""
    return Stored(len(data), hashlib.sha256(data).hexdigest())


class JetStreamObjects:
    """Objects in a JetStream object store bucket."""

    def __init__(self, js: JetStreamContext, bucket: str = subjects.OUTPUT_BUCKET) -> None:
        self._js = js
        self._bucket = bucket
        self._store: ObjectStore | None = None

    async def ensure(self) -> None:
        """Create the bucket if missing (file storage)."""
        try:
            self._store = await self._js.object_store(self._bucket)
        except BucketNotFoundError:
            try:
                self._store = await self._js.create_object_store(self._bucket, storage=StorageType.FILE,
                                                                 description="Stoker generation outputs")
            except BadRequestError:  # created concurrently
                self._store = await self._js.object_store(self._bucket)

    async def _os(self) -> ObjectStore:
        if self._store is None:
            await self.ensure()
        assert self._store is not None
        return self._store

    async def put(self, name: str, data: bytes, content_type: str) -> Stored:
        """Store one object; its content type goes in the object's headers."""
        store = await self._os()
        with tracing.span("generation", "object_store put", kind=SpanKind.CLIENT,
                          attributes={"messaging.system": "nats", "stoker.bucket": self._bucket,
                                      "stoker.object.size": len(data), "stoker.object.content_type": content_type}):
            await store.put(name, data, meta=ObjectMeta(name=name, headers={"Content-Type": [content_type]}))
        return digest(data)

    async def get(self, name: str) -> bytes | None:
        """The object's bytes, or None."""
        store = await self._os()
        try:
            result = await store.get(name)
        except (ObjectNotFoundError, NotFoundError):
            return None
        return bytes(result.data or b"")

    async def delete(self, name: str) -> None:
        """Remove one object."""
        store = await self._os()
        try:
            await store.delete(name)
        except (ObjectNotFoundError, NotFoundError):
            pass


class MemoryObjects:
    """In-memory objects, for unit tests."""

    def __init__(self) -> None:
        self.data: dict[str, tuple[bytes, str]] = {}

    async def put(self, name: str, data: bytes, content_type: str) -> Stored:
        """Store one object."""
        self.data[name] = (data, content_type)
        return digest(data)

    async def get(self, name: str) -> bytes | None:
        """The object's bytes, or None."""
        item = self.data.get(name)
        return item[0] if item else None

    async def delete(self, name: str) -> None:
        """Remove one object."""
        self.data.pop(name, None)
