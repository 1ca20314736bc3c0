"""Sending a service's commands over NATS request/reply, and mapping its refusals to HTTP.

One mechanism for every service the gateway commands (pool, generation): the per-pool subject,
the trace context in the headers, transport failures as 503, unreadable replies as 502, and the
service's own error codes mapped to HTTP statuses.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

import msgspec
import nats.errors
from nats.aio.client import Client as NatsClient

from libs.events import codec, subjects
from libs.observability import tracing
from services.gateway.errors import ApiError

log = logging.getLogger("stoker.gateway")


class CommandClient:
    """A service's command API as the gateway sees it; subclasses say which service and how it refuses."""

    service = ""  # "pool", "generation": used in messages
    code = ""  # "POOL", "GENERATION": prefix of the gateway's own error codes
    noun = "command"  # what one message is called in messages
    statuses: Mapping[str, int] = {}  # the service's error codes -> HTTP status
    refusal_retry_after = "5"  # Retry-After on a 503 the service itself answered
    reply_type: Any = None
    error_type: Callable[..., Any] = dict

    def __init__(self, nc: NatsClient, *, timeout: float = 10.0, pool_id: str = "default") -> None:
        self._nc = nc
        self._timeout = timeout
        self._pool_id = pool_id
        self._decoder = msgspec.json.Decoder(self.reply_type)

    def _unavailable(self, message: str) -> ApiError:
        return ApiError(503, f"{self.code}_UNAVAILABLE", message, headers={"Retry-After": "5"})

    async def send(self, subject: str, request: Any, timeout: float | None = None) -> Any:
        """Send one message; its result, or ApiError with the service's code mapped to an HTTP status."""
        subject = subjects.scoped(subject, self._pool_id)
        if not self._nc.is_connected:  # a request now would wait out its whole timeout in the reconnect buffer
            raise self._unavailable(f"cannot reach the {self.service} service: NATS is unavailable")
        try:
            msg = await self._nc.request(subject, codec.encode(request), timeout=timeout or self._timeout,
                                         headers=tracing.inject())
        except nats.errors.NoRespondersError:
            raise self._unavailable(f"the {self.service} service is not running") from None
        except (nats.errors.TimeoutError, TimeoutError):
            raise self._unavailable(f"the {self.service} service did not answer in time") from None
        except nats.errors.Error as exc:
            log.warning("%s command %s failed: %s", self.service, subject, type(exc).__name__)
            raise self._unavailable(f"cannot reach the {self.service} service") from None
        try:
            reply = self._decoder.decode(msg.data)
        except (msgspec.DecodeError, msgspec.ValidationError):
            raise ApiError(502, f"{self.code}_ERROR", f"the {self.service} service sent an unreadable reply") from None
        if reply.ok:
            return reply.result
        error = reply.error or self.error_type(code="INTERNAL", message="refused without a reason")
        status = self.statuses.get(error.code)
        if status is None:
            raise ApiError(502, f"{self.code}_ERROR", f"the {self.service} service failed to handle the {self.noun}",
                           details={f"{self.service}_code": error.code})
        headers = {"Retry-After": self.refusal_retry_after} if status == 503 else None
        raise ApiError(status, error.code, error.message, details=error.details, headers=headers)
