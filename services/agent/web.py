"""The agent's HTTP face: every request needs the instance secret; ``/agent/*`` is the agent, the rest is ComfyUI.

ComfyUI listens on loopback only; this proxy (HTTP and WebSocket) is the single way in. The
secret is ``Authorization: Bearer <secret>``; a request without it gets 401 and nothing else.
"""

from __future__ import annotations

import asyncio
import hmac
from collections.abc import Awaitable, Callable

import aiohttp
from aiohttp import web

from .files import KINDS, BadName, check_name
from .runtime import Agent

AGENT = web.AppKey("agent", Agent)
MAX_BODY = 200 * 1024 * 1024
MAX_TAIL = 10_000
# Hop-by-hop headers (RFC 9110 §7.6.1) and the ones the proxy sets itself.
_DROP = frozenset({"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
                   "transfer-encoding", "upgrade", "host", "authorization", "content-length"})
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def error(status: int, code: str, message: str) -> web.Response:
    """The JSON error shape."""
    return web.json_response({"error": {"code": code, "message": message}}, status=status)


def authorized(request: web.Request, secret: str) -> bool:
    """Whether the request carries the instance secret (constant-time compare; no secret: nobody)."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    return bool(secret) and scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(),
                                                                              secret.encode())


@web.middleware
async def require_secret(request: web.Request, handler: Handler) -> web.StreamResponse:
    """401 for anything without the instance secret."""
    if not authorized(request, request.app[AGENT].secret):
        return error(401, "UNAUTHORIZED", "this host answers only with its instance secret "
                                          "(Authorization: Bearer …)")
    return await handler(request)


async def status(request: web.Request) -> web.Response:
    """``GET /agent/status``."""
    return web.json_response(await request.app[AGENT].status())


async def logs(request: web.Request) -> web.Response:
    """``GET /agent/logs?tail=N``: ComfyUI's log and the agent's own."""
    raw = request.query.get("tail", "200")
    if not raw.isdigit() or not 0 < int(raw) <= MAX_TAIL:
        return error(400, "VALIDATION_FAILED", f"tail must be a whole number from 1 to {MAX_TAIL}")
    n, agent = int(raw), request.app[AGENT]
    return web.json_response({"agent": list(agent.log)[-n:], "comfyui": agent.comfy.log_tail(n)})


def _target(request: web.Request) -> tuple[str, str]:
    kind, name = request.match_info["kind"], request.match_info["name"]
    if kind not in KINDS:
        raise BadName(f"unknown folder {kind!r}: one of {', '.join(KINDS)}")
    return kind, check_name(name)


async def put_file(request: web.Request) -> web.Response:
    """``PUT /agent/files/{input|loras}/{path}``: place a file (raw body)."""
    try:
        kind, name = _target(request)
    except BadName as exc:
        return error(400, "BAD_PATH", str(exc))
    if kind in ("output", "temp"):
        return error(400, "BAD_PATH", "outputs are written by ComfyUI, not placed")
    data = await request.read()
    request.app[AGENT].files.put(kind, name, data)
    request.app[AGENT].note(f"placed {kind}/{name} ({len(data)} bytes)")
    return web.json_response({"kind": kind, "name": name, "size": len(data)}, status=201)


async def get_file(request: web.Request) -> web.Response:
    """``GET /agent/files/{kind}/{path}``: fetch a file."""
    try:
        kind, name = _target(request)
    except BadName as exc:
        return error(400, "BAD_PATH", str(exc))
    data = request.app[AGENT].files.get(kind, name)
    if data is None:
        return error(404, "NOT_FOUND", f"no {kind} file {name}")
    return web.Response(body=data, content_type="application/octet-stream")


async def delete_file(request: web.Request) -> web.Response:
    """``DELETE /agent/files/{folder}/{path}``: remove a job's file, idempotent (``{"removed": [...]}``)."""
    try:
        kind, name = _target(request)
    except BadName as exc:
        return error(400, "BAD_PATH", str(exc))
    removed = request.app[AGENT].files.delete(kind, name)
    return web.json_response({"removed": [f"{kind}/{name}"] if removed else []})


async def wipe(request: web.Request) -> web.Response:
    """``DELETE /agent/files``: the hand-over wipe of every user file (never models, never what the image shipped)."""
    removed = request.app[AGENT].files.wipe()
    request.app[AGENT].note(f"wiped {len(removed)} job file(s)")
    return web.json_response({"removed": removed})


class Proxy:
    """Forwards everything else to ComfyUI on loopback (HTTP and WebSocket)."""

    def __init__(self, agent: Agent) -> None:
        self.agent = agent

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """Forward one request (or WebSocket) to ComfyUI."""
        if self.agent.state.phase not in ("ready", "starting_comfyui"):
            return error(503, "NOT_READY", f"ComfyUI is not running yet (agent phase {self.agent.state.phase})")
        url = self.agent.comfy.url + request.rel_url.raw_path_qs
        if request.headers.get("Upgrade", "").lower() == "websocket":
            return await self._websocket(request, url.replace("http", "ws", 1))
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _DROP}
        body = await request.read() if request.can_read_body else None
        try:
            async with self.agent.session.request(request.method, url, headers=headers, data=body,
                                                  allow_redirects=False) as resp:
                payload = await resp.read()
                out = {k: v for k, v in resp.headers.items() if k.lower() not in _DROP | {"content-encoding"}}
                return web.Response(status=resp.status, body=payload, headers=out)
        except (aiohttp.ClientError, OSError) as exc:
            return error(502, "COMFYUI_UNREACHABLE", f"ComfyUI did not answer: {type(exc).__name__}")

    async def _websocket(self, request: web.Request, url: str) -> web.StreamResponse:
        try:
            upstream = await self.agent.session.ws_connect(url, heartbeat=20.0)
        except (aiohttp.ClientError, OSError) as exc:
            return error(502, "COMFYUI_UNREACHABLE", f"ComfyUI websocket: {type(exc).__name__}")
        ws = web.WebSocketResponse(heartbeat=20.0, max_msg_size=0)
        await ws.prepare(request)

        async def pump(src: aiohttp.ClientWebSocketResponse | web.WebSocketResponse,
                       dst: aiohttp.ClientWebSocketResponse | web.WebSocketResponse) -> None:
            async for msg in src:
                if msg.type == aiohttp.WSMsgType.TEXT:
                    await dst.send_str(msg.data)
                elif msg.type == aiohttp.WSMsgType.BINARY:
                    await dst.send_bytes(msg.data)
                else:
                    break

        tasks = [asyncio.create_task(pump(upstream, ws)), asyncio.create_task(pump(ws, upstream))]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await upstream.close()
            await ws.close()
        return ws


def build_app(agent: Agent) -> web.Application:
    """The agent's aiohttp application."""
    app = web.Application(middlewares=[require_secret], client_max_size=MAX_BODY)
    app[AGENT] = agent
    app.router.add_get("/agent/status", status)
    app.router.add_get("/agent/logs", logs)
    app.router.add_put("/agent/files/{kind}/{name:.+}", put_file)
    app.router.add_get("/agent/files/{kind}/{name:.+}", get_file)
    app.router.add_delete("/agent/files/{kind}/{name:.+}", delete_file)
    app.router.add_delete("/agent/files", wipe)
    app.router.add_route("*", "/agent/{rest:.*}", _unknown)
    app.router.add_route("*", "/{path:.*}", Proxy(agent).handle)
    return app


async def _unknown(request: web.Request) -> web.Response:
    return error(404, "NOT_FOUND", f"no agent route {request.path}")
