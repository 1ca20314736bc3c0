"""Sending pool commands over NATS request/reply, and mapping the pool's refusals to HTTP."""

from __future__ import annotations

from services.gateway.command_client import CommandClient
from services.pool import api

# The pool's error codes and the HTTP status each means to a client.
POOL_STATUS = {
    "VALIDATION_FAILED": 422,
    "NOT_FOUND": 404,
    "CONFLICT": 409,
    "SAFE_MODE": 409,
    "LIMIT": 409,
    "NO_CAPACITY": 503,
    "UNAVAILABLE": 503,
    "UNAUTHORIZED": 401,
}


class PoolClient(CommandClient):
    """The pool's command API as seen from the gateway."""

    service, code, noun = "pool", "POOL", "command"
    statuses = POOL_STATUS
    refusal_retry_after = "10"
    reply_type = api.Reply
    error_type = api.Error
