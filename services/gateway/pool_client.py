"""Sending pool commands over NATS request/reply, and mapping the pool's refusals to HTTP."""

from __future__ import annotations

import logging
from typing import Any

import msgspec
import nats.errors
from nats.aio.client import Client as NatsClient

from libs.events import codec
from libs.observability import tracing
from services.gateway.errors import ApiError
from services.pool import api

log = logging.getLogger("stoker.gateway")

# The pool's error codes and the HTTP status each means to a client.
POOL_STATUS = {
    "VALIDATION_FAILED": 422,
    "NOT_FOUND": 404,
    "CONFLICT": 409,
    "SAFE_MODE": 409,
    "LIMIT": 409,
    "NO_CAPACITY": 503,
}

_reply_decoder = msgspec.json.Decoder(api.Reply)


class PoolClient:
    """The pool's command API as seen from the gateway."""

    def __init__(self, nc: NatsClient, *, timeout: float = 10.0, pool_id: str = "default") -> None:
        self._nc = nc
        self._timeout = timeout
        self._pool_id = pool_id

    async def send(self, subject: str, request: api.Request, timeout: float | None = None) -> Any:
        """Send one command; its result, or ApiError with the pool's code mapped to an HTTP status."""
        subject = api.for_pool(subject, self._pool_id)
        try:
            msg = await self._nc.request(subject, codec.encode(request), timeout=timeout or self._timeout,
                                         headers=tracing.inject())
        except nats.errors.NoRespondersError:
            raise ApiError(503, "POOL_UNAVAILABLE", "the pool service is not running",
                           headers={"Retry-After": "5"}) from None
        except (nats.errors.TimeoutError, TimeoutError):
            raise ApiError(503, "POOL_UNAVAILABLE", "the pool service did not answer in time",
                           headers={"Retry-After": "5"}) from None
        except nats.errors.Error as exc:
            log.warning("pool command %s failed: %s", subject, type(exc).__name__)
            raise ApiError(503, "POOL_UNAVAILABLE", "cannot reach the pool service", headers={"Retry-After": "5"}) from None
        try:
            reply = _reply_decoder.decode(msg.data)
        except (msgspec.DecodeError, msgspec.ValidationError):
            raise ApiError(502, "POOL_ERROR", "the pool service sent an unreadable reply") from None
        if reply.ok:
            return reply.result
        error = reply.error or api.Error(code="INTERNAL", message="refused without a reason")
        status = POOL_STATUS.get(error.code)
        if status is None:
            raise ApiError(502, "POOL_ERROR", "the pool service failed to handle the command",
                           details={"pool_code": error.code})
        headers = {"Retry-After": "10"} if status == 503 else None
        raise ApiError(status, error.code, error.message, details=error.details, headers=headers)
