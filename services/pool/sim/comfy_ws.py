"""WebSocket side of a simulated ComfyUI host: client sockets and in-order message delivery."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

from aiohttp import WSMsgType, web

from services.pool.sim.comfy_exec import Executor, preview_frame

FEATURES = {"supports_preview_metadata": True, "max_upload_size": 104857600}


class _Socket:
    def __init__(self, ws: web.WebSocketResponse, transport: asyncio.Transport | None) -> None:
        self.ws, self.transport, self.metadata_previews = ws, transport, False


class SocketHub:
    """Connected ``/ws`` clients by clientId; messages go out in the order they were queued."""

    def __init__(self) -> None:
        self.sockets: dict[str, _Socket] = {}
        self._outbox: asyncio.Queue[tuple[str | bytes, str | None, bytes | None]] = asyncio.Queue()

    def send(self, event: str, data: dict[str, Any], sid: str | None) -> None:
        """Queue a JSON message for one socket, or every socket when ``sid`` is None."""
        self._outbox.put_nowait((json.dumps({"type": event, "data": data}), sid, None))

    def send_preview(self, png: bytes, meta: dict[str, Any], sid: str | None) -> None:
        """Queue a binary preview (type 1, or type 4 for sockets that asked for metadata)."""
        self._outbox.put_nowait((preview_frame(png, None), sid, preview_frame(png, meta)))

    async def publish_forever(self) -> None:
        """Deliver queued messages one by one."""
        while True:
            payload, sid, with_meta = await self._outbox.get()
            targets = list(self.sockets.values()) if sid is None else [s for k, s in self.sockets.items() if k == sid]
            for sock in targets:
                try:
                    if isinstance(payload, str):
                        await sock.ws.send_str(payload)
                    else:
                        await sock.ws.send_bytes(with_meta if sock.metadata_previews and with_meta else payload)
                except (ConnectionError, RuntimeError):
                    pass

    def drop_all(self) -> None:
        """Cut every connection without a close handshake (the host died)."""
        for sock in self.sockets.values():
            if sock.transport is not None:
                sock.transport.abort()
        self.sockets.clear()

    async def handle(self, request: web.Request, executor: Executor) -> web.WebSocketResponse:
        """The ``/ws?clientId=`` endpoint."""
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        sid = request.query.get("clientId") or uuid.uuid4().hex
        sock = _Socket(ws, request.transport)
        self.sockets[sid] = sock  # a reconnect with the same id replaces the old socket
        try:
            await ws.send_str(json.dumps({"type": "status", "data": {
                "status": {"exec_info": {"queue_remaining": executor.remaining()}}, "sid": sid}}))
            running = executor.running
            if running is not None and running[3].get("client_id") == sid and executor.current_node:
                await ws.send_str(json.dumps({"type": "executing", "data": {"node": executor.current_node}}))
            first = True
            async for msg in ws:
                if msg.type == WSMsgType.TEXT and first:
                    try:
                        data = json.loads(msg.data)
                    except ValueError:
                        data = {}
                    if isinstance(data, dict) and data.get("type") == "feature_flags":
                        sock.metadata_previews = bool((data.get("data") or {}).get("supports_preview_metadata"))
                        await ws.send_str(json.dumps({"type": "feature_flags", "data": FEATURES}))
                first = False
        except (ConnectionError, RuntimeError):
            pass
        finally:
            if self.sockets.get(sid) is sock:
                del self.sockets[sid]
        return ws
