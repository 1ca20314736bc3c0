"""Provider keys at runtime: admin only, from this machine only, handed to the pool and nowhere else.

The key travels in one NATS request to the pool and is never logged, stored in an event, put
in the audit log (the AdminActionPerformed event carries method, path and outcome only) or
echoed in an error.
"""

from __future__ import annotations

from typing import Any

from services.gateway import schemas as s
from services.gateway.resources import POOL_CLIENT
from services.gateway.routing import Call, Operation
from services.pool import api


async def set_provider_keys(call: Call) -> Any:
    """Forward each given provider key to the pool (every replica takes it; the first answer is enough)."""
    body: s.ProviderKeysBody = call.body
    request = api.SetProviderKeyRequest(provider="vastai", api_key=body.vastai_api_key, actor=call.who.actor,
                                        correlation_id=call.correlation_id)
    await call.app[POOL_CLIENT].send(api.SET_PROVIDER_KEY, request)
    return {"updated": ["vastai"]}


OPERATIONS = [
    Operation("POST", "/api/v1/admin/tokens", set_provider_keys, "set_provider_keys",
              "Set provider API keys at runtime (loopback only)", "admin", role="admin", body=s.ProviderKeysBody,
              response=s.ProviderKeysResult, loopback_only=True, errors=(503,),
              description="Accepted only from a loopback peer address. The key is kept in the pool's memory."),
]
