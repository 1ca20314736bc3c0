"""Sending generation commands over NATS request/reply, and mapping the service's refusals to HTTP."""

from __future__ import annotations

import logging
from typing import Any

import msgspec
import nats.errors
from nats.aio.client import Client as NatsClient

from libs.events import codec
from libs.observability import tracing
from services.gateway.errors import ApiError
from services.generation import api

log = logging.getLogger("stoker.gateway")

# The generation service's error codes and the HTTP status each means to a client.
GEN_STATUS = {
    "VALIDATION_FAILED": 422,
    "NOT_FOUND": 404,
    "CONFLICT": 409,
    "UNAVAILABLE": 503,
}

_reply_decoder = msgspec.json.Decoder(api.Reply)


def _unavailable(message: str) -> ApiError:
    return ApiError(503, "GENERATION_UNAVAILABLE", message, headers={"Retry-After": "5"})


class GenClient:
    """The generation service's command API (``cmd.gen.<verb>``) as seen from the gateway."""

    def __init__(self, nc: NatsClient, *, timeout: float = 10.0, pool_id: str = "default") -> None:
        self._nc = nc
        self._timeout = timeout
        self._pool_id = pool_id

    async def send(self, subject: str, request: api.Request, timeout: float | None = None) -> Any:
        """Send one request; its result (builtins), or ApiError with the service's code mapped to a status."""
        subject = api.for_pool(subject, self._pool_id)
        try:
            msg = await self._nc.request(subject, codec.encode(request), timeout=timeout or self._timeout,
                                         headers=tracing.inject())
        except nats.errors.NoRespondersError:
            raise _unavailable("the generation service is not running") from None
        except (nats.errors.TimeoutError, TimeoutError):
            raise _unavailable("the generation service did not answer in time") from None
        except nats.errors.Error as exc:
            log.warning("generation command %s failed: %s", subject, type(exc).__name__)
            raise _unavailable("cannot reach the generation service") from None
        try:
            reply = _reply_decoder.decode(msg.data)
        except (msgspec.DecodeError, msgspec.ValidationError):
            raise ApiError(502, "GENERATION_ERROR", "the generation service sent an unreadable reply") from None
        if reply.ok:
            return reply.result
        error = reply.error or api.Error(code="INTERNAL", message="refused without a reason")
        status = GEN_STATUS.get(error.code)
        if status is None:
            raise ApiError(502, "GENERATION_ERROR", "the generation service failed to handle the request",
                           details={"generation_code": error.code})
        headers = {"Retry-After": "5"} if status == 503 else None
        raise ApiError(status, error.code, error.message, details=error.details, headers=headers)

    async def call(self, subject: str, request: api.Request, result_type: Any, timeout: float | None = None) -> Any:
        """``send``, with the result converted to ``result_type``."""
        result = await self.send(subject, request, timeout)
        try:
            return msgspec.convert(result, result_type)
        except msgspec.ValidationError:
            raise ApiError(502, "GENERATION_ERROR", "the generation service sent an unexpected result") from None
