"""The ComfyUI host port and its HTTP + WebSocket adapter (httpx for HTTP, aiohttp for /ws).

See /work/shared/specs/comfyui-api.md. Errors are sorted for the caller: a host that does
not answer (connection refused, 502/503/504, timeouts) is ``HostUnreachable``; a 400 on
``POST /prompt`` is ``PromptRejected`` with ComfyUI's own error and node errors.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Protocol

import aiohttp
import httpx
from opentelemetry.trace import SpanKind, StatusCode

from libs.events import codec
from libs.observability import tracing

if TYPE_CHECKING:
    from .host_files import HostFiles

RETRYABLE_STATUS = frozenset({502, 503, 504})


def route_of(path: str) -> str:
    """A path as a low-cardinality span name (``/history/{prompt_id}``)."""
    return "/history/{prompt_id}" if path.startswith("/history/") else path.split("?", 1)[0]


class ComfyError(Exception):
    """The host answered something unexpected."""


class HostUnreachable(ComfyError):
    """The host did not answer (it may be gone)."""


class SocketClosed(ComfyError):
    """The WebSocket dropped."""


class PromptRejected(ComfyError):
    """ComfyUI refused the prompt (400): nothing was queued."""

    def __init__(self, error: dict[str, Any], node_errors: dict[str, Any]) -> None:
        self.error, self.node_errors = error, node_errors
        super().__init__(rejection_message(error, node_errors))


def rejection_message(error: dict[str, Any], node_errors: dict[str, Any]) -> str:
    """One readable line from ComfyUI's validation answer (its own words)."""
    head = str(error.get("message") or "Prompt rejected")
    details = str(error.get("details") or "")
    parts = [f"{head}: {details}" if details and details != head else head]
    for nid, entry in (node_errors or {}).items():
        class_type = entry.get("class_type", "") if isinstance(entry, dict) else ""
        for err in (entry.get("errors") or []) if isinstance(entry, dict) else []:
            text = str(err.get("message", ""))
            if err.get("details"):
                text = f"{text}: {err['details']}"
            parts.append(f"node {nid} ({class_type}): {text}")
    return "; ".join(parts)


class Socket(Protocol):
    """An open ``/ws`` connection."""

    async def receive(self, timeout: float) -> dict[str, Any] | None:
        """The next JSON message, None after ``timeout`` seconds; SocketClosed when it dropped."""
        ...

    async def close(self) -> None:
        """Close it."""
        ...


class ComfyHost(Protocol):
    """One ComfyUI host, as the job runner uses it."""

    base_url: str

    async def connect(self, client_id: str) -> Socket:
        """Open ``/ws?clientId=``; do it before posting so no message is missed."""
        ...

    async def post_prompt(self, prompt: dict[str, Any], *, prompt_id: str, client_id: str) -> dict[str, Any]:
        """Queue a prompt under our own prompt id (PromptRejected on 400); returns node errors of branches
        ComfyUI refused while it runs the others (usually empty)."""
        ...

    async def history(self, prompt_id: str) -> dict[str, Any] | None:
        """The history entry of a finished prompt, None while it is not finished (or unknown)."""
        ...

    async def queue(self) -> tuple[set[str], set[str]]:
        """Prompt ids running and pending."""
        ...

    async def view(self, filename: str, subfolder: str, type_: str) -> bytes:
        """The bytes of an output file."""
        ...

    async def upload_image(self, filename: str, data: bytes) -> str:
        """Store an input image (overwriting); returns the name to give LoadImage."""
        ...

    async def interrupt(self, prompt_id: str) -> None:
        """Interrupt the prompt if it is the running one."""
        ...

    async def delete_queued(self, prompt_ids: list[str]) -> None:
        """Remove pending prompts."""
        ...


class Hosts(Protocol):
    """Makes host clients from base URLs."""

    def host(self, base_url: str) -> ComfyHost:
        """A client for the host at ``base_url``."""
        ...

    def files(self, base_url: str) -> HostFiles:
        """The user files of the host at ``base_url``."""
        ...


class _WsSocket:
    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self._ws = ws

    async def receive(self, timeout: float) -> dict[str, Any] | None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            left = deadline - loop.time()
            if left <= 0:
                return None
            try:
                msg = await self._ws.receive(timeout=left)
            except TimeoutError:
                return None
            except (aiohttp.ClientError, ConnectionError, RuntimeError) as exc:
                raise SocketClosed(str(exc)) from None
            if msg.type == aiohttp.WSMsgType.TEXT:
                try:
                    data = codec.loads(msg.data.encode())
                except ValueError:
                    continue
                if isinstance(data, dict):
                    return data
                continue
            if msg.type == aiohttp.WSMsgType.BINARY:
                continue  # previews: not needed to follow a job
            raise SocketClosed(f"websocket {msg.type.name.lower()}")

    async def close(self) -> None:
        try:
            await self._ws.close()
        except (aiohttp.ClientError, ConnectionError, RuntimeError):
            pass


Auth = Callable[[bool], Awaitable[dict[str, str]]]  # (refresh) -> headers carrying the host's instance secret


async def _no_auth(refresh: bool) -> dict[str, str]:
    return {}


class HttpComfyHost:
    """A ComfyUI host over HTTP and WebSocket (through its Stoker agent, with the instance secret)."""

    def __init__(self, base_url: str, http: httpx.AsyncClient, ws: aiohttp.ClientSession,
                 auth: Auth = _no_auth) -> None:
        self.base_url = base_url.rstrip("/")
        self._http, self._ws, self._auth = http, ws, auth

    def _span_attributes(self, method: str, route: str) -> dict[str, Any]:
        return {"http.request.method": method, "url.template": route,
                "server.address": httpx.URL(self.base_url).host, "server.port": httpx.URL(self.base_url).port or 80}

    async def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        route = route_of(path)
        with tracing.span("generation", f"ComfyUI {method} {route}", kind=SpanKind.CLIENT,
                          attributes=self._span_attributes(method, route)) as span:
            try:
                headers = {**kwargs.pop("headers", {}), **await self._auth(False)}
                resp = await self._http.request(method, self.base_url + path, headers=headers, **kwargs)
                if resp.status_code == 401:  # the secret went stale (a new instance at this address): ask again
                    headers.update(await self._auth(True))
                    resp = await self._http.request(method, self.base_url + path, headers=headers, **kwargs)
            except (httpx.TransportError, httpx.TimeoutException) as exc:
                raise HostUnreachable(f"{method} {path}: {type(exc).__name__} {exc}".strip()) from None
            span.set_attribute("http.response.status_code", resp.status_code)
            if resp.status_code >= 400:
                span.set_status(StatusCode.ERROR, f"HTTP {resp.status_code}")
            if resp.status_code in RETRYABLE_STATUS:
                raise HostUnreachable(f"{method} {path}: HTTP {resp.status_code}")
            return resp

    async def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        resp = await self._request(method, path, **kwargs)
        if resp.status_code != 200:
            raise ComfyError(f"{method} {path}: HTTP {resp.status_code} {resp.text[:200]}")
        try:
            return codec.loads(resp.content) if resp.content.strip() else None
        except ValueError:
            raise ComfyError(f"{method} {path}: not JSON") from None

    async def connect(self, client_id: str) -> Socket:
        url = self.base_url.replace("http", "ws", 1) + f"/ws?clientId={client_id}"
        with tracing.span("generation", "ComfyUI GET /ws", kind=SpanKind.CLIENT,
                          attributes=self._span_attributes("GET", "/ws")):
            try:
                ws = await self._ws.ws_connect(url, timeout=aiohttp.ClientWSTimeout(ws_close=2.0), heartbeat=20.0,
                                               headers=await self._auth(False))
            except (TimeoutError, aiohttp.ClientError, OSError) as exc:
                raise HostUnreachable(f"websocket: {type(exc).__name__} {exc}".strip()) from None
        return _WsSocket(ws)

    async def post_prompt(self, prompt: dict[str, Any], *, prompt_id: str, client_id: str) -> dict[str, Any]:
        body = codec.encode({"prompt": prompt, "client_id": client_id, "prompt_id": prompt_id})
        resp = await self._request("POST", "/prompt", content=body, headers={"content-type": "application/json"})
        if resp.status_code == 400:
            try:
                data = codec.loads(resp.content)
            except ValueError:
                data = {}
            raise PromptRejected(data.get("error") or {"message": resp.text[:500]}, data.get("node_errors") or {})
        if resp.status_code != 200:
            raise ComfyError(f"POST /prompt: HTTP {resp.status_code} {resp.text[:200]}")
        try:
            errors = codec.loads(resp.content).get("node_errors")
        except (ValueError, AttributeError):
            errors = None
        return errors if isinstance(errors, dict) else {}

    async def history(self, prompt_id: str) -> dict[str, Any] | None:
        data = await self._json("GET", f"/history/{prompt_id}")
        entry = (data or {}).get(prompt_id)
        return entry if isinstance(entry, dict) else None

    async def queue(self) -> tuple[set[str], set[str]]:
        data = await self._json("GET", "/queue") or {}
        running = {str(item[1]) for item in data.get("queue_running", []) if len(item) > 1}
        pending = {str(item[1]) for item in data.get("queue_pending", []) if len(item) > 1}
        return running, pending

    async def view(self, filename: str, subfolder: str, type_: str) -> bytes:
        resp = await self._request("GET", "/view", params={"filename": filename, "subfolder": subfolder,
                                                           "type": type_})
        if resp.status_code != 200:
            raise ComfyError(f"GET /view {filename}: HTTP {resp.status_code}")
        return resp.content

    async def upload_image(self, filename: str, data: bytes) -> str:
        resp = await self._request("POST", "/upload/image", files={"image": (filename, data, "image/png")},
                                   data={"type": "input", "overwrite": "true"})
        if resp.status_code != 200:
            raise ComfyError(f"POST /upload/image: HTTP {resp.status_code}")
        body = codec.loads(resp.content)
        sub = body.get("subfolder") or ""
        return f"{sub}/{body['name']}" if sub else str(body["name"])

    async def interrupt(self, prompt_id: str) -> None:
        await self._request("POST", "/interrupt", content=codec.encode({"prompt_id": prompt_id}),
                            headers={"content-type": "application/json"})

    async def delete_queued(self, prompt_ids: list[str]) -> None:
        await self._request("POST", "/queue", content=codec.encode({"delete": prompt_ids}),
                            headers={"content-type": "application/json"})


class HttpComfyHosts:
    """Host clients sharing one HTTP connection pool, one WebSocket session and the hosts' secrets.

    ``access(base_url)`` asks the pool for a host's instance secret (kept in memory only, never
    logged); None means the hosts need none.
    """

    def __init__(self, timeout: float = 30.0, access: Callable[[str], Awaitable[str]] | None = None) -> None:
        self._access = access
        self._secrets: dict[str, str] = {}
        self._http = httpx.AsyncClient(timeout=httpx.Timeout(timeout, connect=5.0),
                                       limits=httpx.Limits(max_connections=200, max_keepalive_connections=50))
        self._session: aiohttp.ClientSession | None = None

    def host(self, base_url: str) -> ComfyHost:
        """A client for one host."""
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None, connect=5.0))
        return HttpComfyHost(base_url, self._http, self._session, auth=lambda refresh: self._auth(base_url, refresh))

    async def _auth(self, base_url: str, refresh: bool) -> dict[str, str]:
        if self._access is None:
            return {}
        key = base_url.rstrip("/")
        if refresh or key not in self._secrets:
            self._secrets[key] = await self._access(key)
        secret = self._secrets[key]
        return {"Authorization": f"Bearer {secret}"} if secret else {}

    def files(self, base_url: str) -> HostFiles:
        """The user files of one host."""
        from .host_files import HttpHostFiles  # the adapter needs this module's errors
        return HttpHostFiles(base_url, self._http, auth=lambda refresh: self._auth(base_url, refresh))

    async def aclose(self) -> None:
        """Close the connection pools."""
        await self._http.aclose()
        if self._session is not None:
            await self._session.close()
