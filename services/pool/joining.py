"""Join tokens and joined boxes: make and revoke tokens, admit a box, take its heartbeats.

A token is ``stj-<token id>-<random>``; the pool keeps only its SHA-256 (in JoinTokenCreated).
A box's node id is derived from the token id and its name, so the same box joining again is the
same node. Its secret is the pool's instance secret for ``node:<node id>``.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from libs.events import NEW, Aggregate, ConcurrencyError, Metadata, Position, subjects
from libs.events import pool as ev
from libs.events.ids import new_id

from .heartbeats import Heartbeats
from .host_secrets import HostSecrets
from .instance import PoolError
from .view import JoinToken, PoolView
from .writer import PoolWriter

HEARTBEAT_S = 10.0


def token_hash(token: str) -> str:
    """The SHA-256 hex of a join token."""
    return hashlib.sha256(token.encode()).hexdigest()


def node_id_for(token_id: str, name: str) -> str:
    """The stable node id of a box named ``name`` joined with ``token_id``."""
    return "n" + hashlib.sha256(f"{token_id}\x00{name}".encode()).hexdigest()[:20]


def check_token(view: PoolView, token: str) -> JoinToken:
    """The token's record when it is valid and not revoked; PoolError UNAUTHORIZED otherwise."""
    parts = token.split("-")
    found = view.join_tokens.get(parts[1]) if len(parts) == 3 and parts[0] == "stj" else None
    if found is None or not hmac.compare_digest(found.token_sha256, token_hash(token)):
        raise PoolError("unknown join token", "UNAUTHORIZED")
    if found.revoked:
        raise PoolError("this join token was revoked", "UNAUTHORIZED")
    return found


class Joining:
    """The join-token commands, on the pool's writer."""

    def __init__(self, writer: PoolWriter, host_secrets: Callable[[], HostSecrets | None], heartbeats: Heartbeats,
                 models: Callable[[], tuple[str, ...]], clock: Callable[[], float] = time.time) -> None:
        self._writer, self._secrets, self._heartbeats, self._models, self._clock = (
            writer, host_secrets, heartbeats, models, clock)

    async def create(self, label: str, dph: float, meta: Metadata) -> dict[str, Any]:
        """A new token (shown once)."""
        if dph < 0 or dph > 1000:
            raise PoolError("dph must be between 0 and 1000", "VALIDATION_FAILED")
        token_id = new_id().replace("-", "")[-16:]
        token = f"stj-{token_id}-{secrets.token_hex(24)}"
        pool_id = self._writer.view.pool_id
        written = await self._writer.store.append(
            Aggregate(subjects.POOL, ev.JOIN_TOKEN, token_id),
            [ev.JoinTokenCreated(pool_id=pool_id, token_sha256=token_hash(token), label=label[:200], dph=dph)],
            NEW, meta)
        await self._writer.projector.wait_for(written[-1].seq)
        return {"token_id": token_id, "token": token, "label": label[:200], "dph": dph}

    async def revoke(self, token_id: str, meta: Metadata) -> dict[str, Any]:
        """Revoke a token (idempotent)."""
        found = self._writer.view.join_tokens.get(token_id)
        if found is None:
            raise PoolError(f"no join token {token_id}", "NOT_FOUND")
        if found.revoked:
            return {"revoked": False}
        store = self._writer.store
        agg = Aggregate(subjects.POOL, ev.JOIN_TOKEN, token_id)
        recorded = list(await store.load(agg))
        last = recorded[-1]
        written = await store.append(agg, [ev.JoinTokenRevoked(pool_id=self._writer.view.pool_id)],
                                     Position(last.envelope.aggregate_version, last.seq), meta)
        await self._writer.projector.wait_for(written[-1].seq)
        return {"revoked": True}

    async def join(self, token: str, url: str, name: str, gpu_name: str, meta: Metadata) -> dict[str, Any]:
        """Admit a box; returns its node id, its secret, the heartbeat period and the models to fetch."""
        view = self._writer.view
        found = check_token(view, token)
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname or not name.strip() or len(name) > 100:
            raise PoolError("url must be the agent's http(s) address and name 1-100 characters", "VALIDATION_FAILED")
        secrets_ = self._secrets()
        if secrets_ is None:
            raise PoolError("this pool's hosts run no agent: own boxes cannot join", "VALIDATION_FAILED")
        node_id = node_id_for(found.id, name.strip())
        event = ev.NodeJoined(pool_id=view.pool_id, token_id=found.id, name=name.strip(), url=url.rstrip("/"),
                              gpu_name=gpu_name[:100])
        agg = Aggregate(subjects.POOL, ev.NODE, node_id)
        for _ in range(3):
            node = self._writer.view.nodes.get(node_id)
            try:
                written = await self._writer.store.append(agg, [event], node.position if node else NEW, meta)
                break
            except ConcurrencyError:
                with contextlib.suppress(TimeoutError):
                    await self._writer.projector.wait_for(self._writer.view.seq + 1, 1.0)
        else:
            raise PoolError("the node changed meanwhile; retry", "CONFLICT")
        await self._writer.projector.wait_for(written[-1].seq)
        await self._heartbeats.beat(node_id, self._clock())
        return {"node_id": node_id, "secret": secrets_.for_instance(f"node:{node_id}"), "heartbeat_s": HEARTBEAT_S,
                "models": list(self._models())}

    async def heartbeat(self, token: str, node_id: str) -> dict[str, Any]:
        """Record that a joined box is alive."""
        found = check_token(self._writer.view, token)
        node = self._writer.view.nodes.get(node_id)
        if node is None or node.token_id != found.id:
            raise PoolError("unknown node: join first", "NOT_FOUND")
        await self._heartbeats.beat(node_id, self._clock())
        return {"ok": True}
