"""The pool as the generation service uses it: claim, renew, release, prewarm (port + NATS adapter)."""

from __future__ import annotations

from typing import Any, Protocol

import msgspec
from nats.aio.client import Client
from nats.errors import Error as NatsError
from opentelemetry.trace import SpanKind, StatusCode

from libs.events import codec
from libs.observability import tracing
from services.pool import api as pool_api


class PoolUnavailable(Exception):
    """The pool did not answer, or refused; ``code`` is the pool's error code (NO_CAPACITY...)."""

    def __init__(self, message: str, code: str = "UNAVAILABLE") -> None:
        super().__init__(message)
        self.code = code


class Pool(Protocol):
    """What a worker asks of the pool."""

    async def claim(self, holder: str, checkpoint: str | None, lease_s: float) -> pool_api.Claim:
        """A Ready instance under a lease (PoolUnavailable code NO_CAPACITY when none is free)."""
        ...

    async def renew(self, instance_id: str, lease_id: str, lease_s: float) -> bool:
        """Extend a lease; False when the lease is not held any more."""
        ...

    async def release(self, instance_id: str, lease_id: str) -> None:
        """Give the instance back."""
        ...

    async def prewarm(self, count: int, key: str) -> None:
        """Ask for ``count`` more instances (idempotent per key)."""
        ...


_claim_reply = msgspec.json.Decoder(pool_api.Reply)


class NatsPool:
    """The pool's command API over NATS request/reply."""

    def __init__(self, nc: Client, *, actor: str = "gen", timeout: float = 5.0, pool_id: str = "default") -> None:
        self._nc, self._actor, self._timeout, self._pool_id = nc, actor, timeout, pool_id

    async def _call(self, subject: str, body: dict[str, Any]) -> Any:
        target = pool_api.for_pool(subject, self._pool_id)
        with tracing.span("generation", subject, kind=SpanKind.CLIENT,
                          attributes={"messaging.system": "nats", "messaging.destination.name": subject}) as span:
            try:
                msg = await self._nc.request(target, codec.encode({"actor": self._actor, **body}),
                                             timeout=self._timeout, headers=tracing.inject())
            except (NatsError, TimeoutError) as exc:
                span.set_status(StatusCode.ERROR, type(exc).__name__)
                raise PoolUnavailable(f"the pool did not answer {subject}: {type(exc).__name__}") from None
            reply = _claim_reply.decode(msg.data)
            if not reply.ok:
                err = reply.error or pool_api.Error(code="UNAVAILABLE", message="refused")
                span.set_attribute("stoker.error.code", err.code)
                raise PoolUnavailable(err.message, err.code)
            return reply.result

    async def claim(self, holder: str, checkpoint: str | None, lease_s: float) -> pool_api.Claim:
        """Claim an instance."""
        result = await self._call(pool_api.CLAIM, {"holder": holder, "checkpoint": checkpoint, "lease_s": lease_s})
        return msgspec.convert(result, pool_api.Claim)

    async def renew(self, instance_id: str, lease_id: str, lease_s: float) -> bool:
        """Extend a lease."""
        try:
            await self._call(pool_api.RENEW, {"instance_id": instance_id, "lease_id": lease_id, "lease_s": lease_s})
        except PoolUnavailable as exc:
            if exc.code == "NOT_FOUND":
                return False
            raise
        return True

    async def release(self, instance_id: str, lease_id: str) -> None:
        """Release a lease."""
        await self._call(pool_api.RELEASE, {"instance_id": instance_id, "lease_id": lease_id})

    async def host_secret(self, base_url: str) -> str:
        """The instance secret of the host at ``base_url`` ("" when it needs none); never logged.

        Raises HostUnreachable when the pool does not know the host (it is gone) or does not answer.
        """
        from .comfy import HostUnreachable

        try:
            result = await self._call(pool_api.HOST_ACCESS, {"base_url": base_url})
        except PoolUnavailable as exc:
            raise HostUnreachable(f"no access to the host: {exc.code}") from None
        return str(msgspec.convert(result, pool_api.HostAccess).secret)

    async def prewarm(self, count: int, key: str) -> None:
        """Rent more instances now."""
        await self._call(pool_api.PREWARM, {"count": count, "idempotency_key": key})
