"""Provider keys and model tokens at runtime: admin only, from this machine only, handed to the pool and
nowhere else.

The key travels in one NATS request to the pool and is never logged, stored in an event, put
in the audit log (the AdminActionPerformed event carries method, path and outcome only) or
echoed in an error.
"""

from __future__ import annotations

from typing import Any

from services.gateway import schemas as s
from services.gateway.errors import validation_failed
from services.gateway.resources import POOL_CLIENT
from services.gateway.routing import Call, Operation
from services.pool import api


async def set_provider_keys(call: Call) -> Any:
    """Forward each given key or token to the pool (every replica takes it; the first answer is enough)."""
    body: s.ProviderKeysBody = call.body
    given = [(name, value) for name, value in (("vastai", body.vastai_api_key), ("huggingface", body.hf_token),
                                               ("civitai", body.civitai_token)) if value]
    if not given:
        raise validation_failed("give at least one of vastai_api_key, hf_token, civitai_token")
    for provider, value in given:
        request = api.SetProviderKeyRequest(provider=provider, api_key=value, actor=call.who.actor,
                                            correlation_id=call.correlation_id)
        await call.app[POOL_CLIENT].send(api.SET_PROVIDER_KEY, request)
    return {"updated": [provider for provider, _ in given]}


OPERATIONS = [
    Operation("POST", "/api/v1/admin/tokens", set_provider_keys, "set_provider_keys",
              "Set provider API keys and model tokens at runtime (loopback only)", "admin", role="admin",
              body=s.ProviderKeysBody, response=s.ProviderKeysResult, loopback_only=True, errors=(503,),
              description="Accepted only from this machine (see STOKER_TRUSTED_PROXIES). Keys and tokens are "
                          "kept in the pool's memory; HF and Civitai tokens go to machines rented from now on."),
]
