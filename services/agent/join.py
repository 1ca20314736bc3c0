"""Joining a pool with your own box: ``stoker agent --join https://GATEWAY --token JOIN_TOKEN``.

The agent posts its join token, its public address and its GPU to the gateway, gets back its node
id, its secret (every caller must send it) and the models to fetch, then heartbeats. The join
token is sent only to the gateway given, and never logged.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import Any

import aiohttp

log = logging.getLogger("stoker.agent.join")


class JoinError(Exception):
    """The gateway refused the join (the message says why) or could not be reached."""


def default_advertise(port: int) -> str:
    """This host's address as other machines reach it (best guess: the interface of the default route)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))  # no packet is sent: this only picks the outgoing interface
            ip = s.getsockname()[0]
        except OSError:
            ip = "127.0.0.1"
    return f"http://{ip}:{port}"


async def join(session: aiohttp.ClientSession, gateway: str, token: str, url: str, name: str,
               gpu_name: str = "") -> dict[str, Any]:
    """Join; returns {node_id, secret, heartbeat_s, models}."""
    body = {"token": token, "url": url, "name": name, "gpu_name": gpu_name}
    try:
        async with session.post(gateway.rstrip("/") + "/api/v1/agents/join", json=body) as resp:
            data = await resp.json(content_type=None)
            if resp.status != 200:
                message = (data or {}).get("error", {}).get("message") if isinstance(data, dict) else None
                raise JoinError(f"the gateway refused to join ({resp.status}): {message or 'no reason given'}")
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        raise JoinError(f"cannot reach {gateway}: {type(exc).__name__}") from None
    return data  # type: ignore[no-any-return]


async def heartbeat_forever(session: aiohttp.ClientSession, gateway: str, token: str, node_id: str,
                            every: float) -> None:
    """Tell the pool this box is alive every ``every`` seconds (a refusal is logged, and retried)."""
    url = gateway.rstrip("/") + "/api/v1/agents/heartbeat"
    while True:
        try:
            async with session.post(url, json={"token": token, "node_id": node_id}) as resp:
                if resp.status != 200:
                    log.warning("heartbeat refused (%d): is the join token revoked?", resp.status)
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.warning("heartbeat failed: %s", type(exc).__name__)
        await asyncio.sleep(every)
