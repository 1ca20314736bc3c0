"""Sending generation commands over NATS request/reply, and mapping the service's refusals to HTTP."""

from __future__ import annotations

from typing import Any

import msgspec

from services.gateway.command_client import CommandClient
from services.gateway.errors import ApiError
from services.generation import api

# The generation service's error codes and the HTTP status each means to a client.
GEN_STATUS = {
    "VALIDATION_FAILED": 422,
    "CHECKPOINT_UNAVAILABLE": 422,
    "NOT_FOUND": 404,
    "CONFLICT": 409,
    "UNAVAILABLE": 503,
}


class GenClient(CommandClient):
    """The generation service's command API (``cmd.gen.<pool>.<verb>``) as seen from the gateway."""

    service, code, noun = "generation", "GENERATION", "request"
    statuses = GEN_STATUS
    refusal_retry_after = "5"
    reply_type = api.Reply
    error_type = api.Error

    async def call(self, subject: str, request: api.Request, result_type: Any, timeout: float | None = None) -> Any:
        """``send``, with the result converted to ``result_type``."""
        result = await self.send(subject, request, timeout)
        try:
            return msgspec.convert(result, result_type)
        except msgspec.ValidationError:
            raise ApiError(502, "GENERATION_ERROR", "the generation service sent an unexpected result") from None
