"""Per-instance secrets: HMAC(pool instance key, pool id + instance id), made at rent time, never stored.

The key comes from ``STOKER_INSTANCE_KEY`` or, when unset, from the NATS KV bucket
``stoker-pool-secrets`` (created once by whichever replica gets there first, so every replica and
every restart derives the same secrets). A secret goes to its host in the provider's env
(``STOKER_INSTANCE_SECRET``) and to Stoker's own callers only over the pool's ``host_access``
request/reply; never into an event, a log line or an error.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Mapping

from nats.js import JetStreamContext
from nats.js.errors import (
    BucketNotFoundError,
    KeyNotFoundError,
    KeyWrongLastSequenceError,
)

from libs.events import subjects

BUCKET = subjects.POOL_SECRETS_BUCKET
ENV_KEY = "STOKER_INSTANCE_KEY"
SECRET_ENV = "STOKER_INSTANCE_SECRET"  # the name the agent reads on the host


class HostSecrets:
    """Derives instance secrets from one key."""

    def __init__(self, key: bytes, pool_id: str) -> None:
        self._key, self._pool_id = key, pool_id

    def for_instance(self, instance_id: str) -> str:
        """The secret of one instance (same inputs, same secret)."""
        return hmac.new(self._key, f"{self._pool_id}\x00{instance_id}".encode(), hashlib.sha256).hexdigest()

    def __repr__(self) -> str:
        return f"HostSecrets(pool_id={self._pool_id!r}, key=<redacted>)"


async def load_key(js: JetStreamContext, env: Mapping[str, str], pool_id: str) -> bytes:
    """The instance key: from the environment, else the KV bucket (created on first use)."""
    if env.get(ENV_KEY, "").strip():
        return env[ENV_KEY].strip().encode()
    try:
        kv = await js.key_value(BUCKET)
    except BucketNotFoundError:
        kv = await js.create_key_value(bucket=BUCKET, history=1)
    name = f"instance-key.{pool_id}"
    try:
        entry = await kv.get(name)
        if entry.value:
            return entry.value
    except KeyNotFoundError:
        pass
    try:
        await kv.create(name, secrets.token_hex(32).encode())
    except KeyWrongLastSequenceError:
        pass  # another replica created it first: use theirs
    entry = await kv.get(name)
    assert entry.value
    return entry.value
