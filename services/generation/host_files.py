"""User files on an instance: place a job's inputs, remove the job's files after it, wipe on hand-over.

The port (``HostFiles``) and its HTTP adapter. Removal uses the Stoker agent's routes
(``libs.contracts.host_files``); on a plain ComfyUI, which cannot delete, a file is
overwritten with a blank image instead, and the hand-over wipe is not possible (the job's
own clean-up and unguessable names are what protect inputs there).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

import httpx

from libs.contracts import host_files as hf
from libs.events import codec

from .comfy import ComfyError, HostUnreachable

log = logging.getLogger("stoker.generation.files")
NO_AGENT = frozenset({404, 405})


class HostFiles(Protocol):
    """One instance's user files, as the job runner manages them."""

    async def place(self, path: str, data: bytes) -> str:
        """Store an input at ``subfolder/name`` (overwriting); returns the value ``LoadImage`` takes."""
        ...

    async def remove(self, files: Sequence[hf.FileRef]) -> None:
        """Remove these files (absent ones are fine)."""
        ...

    async def wipe(self) -> bool:
        """Remove every user file (the instance changes hands); False when the host cannot."""
        ...


class HttpHostFiles:
    """``HostFiles`` over HTTP: ComfyUI's upload route, the agent's delete routes."""

    def __init__(self, base_url: str, http: httpx.AsyncClient,
                 auth: Callable[[bool], Awaitable[dict[str, str]]] | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self._http = http
        self._auth = auth  # (refresh) -> headers with the host's instance secret (every call to an agent needs it)

    async def _headers(self, refresh: bool) -> dict[str, str]:
        return await self._auth(refresh) if self._auth is not None else {}

    async def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            resp = await self._http.request(method, self.base_url + path, headers=await self._headers(False), **kwargs)
            if resp.status_code == 401 and self._auth is not None:  # a stale secret: ask again once
                resp = await self._http.request(method, self.base_url + path, headers=await self._headers(True),
                                                **kwargs)
        except (httpx.TransportError, httpx.TimeoutException) as exc:
            raise HostUnreachable(f"{method} {path.split('?')[0]}: {type(exc).__name__}") from None
        if resp.status_code in (502, 503, 504):
            raise HostUnreachable(f"{method} {path}: HTTP {resp.status_code}")
        return resp

    async def _upload(self, ref: hf.FileRef, data: bytes) -> str:
        resp = await self._send("POST", "/upload/image", files={"image": (ref.filename, data, "image/png")},
                                data={"type": ref.folder, "subfolder": ref.subfolder, "overwrite": "true"})
        if resp.status_code != 200:
            raise ComfyError(f"POST /upload/image: HTTP {resp.status_code}")
        try:
            body = codec.loads(resp.content)
            sub, name = str(body.get("subfolder") or ""), str(body["name"])
        except (ValueError, KeyError, AttributeError):
            raise ComfyError("POST /upload/image: not ComfyUI's answer") from None
        return f"{sub}/{name}" if sub else name

    async def place(self, path: str, data: bytes) -> str:
        sub, name = hf.split(path)
        return await self._upload(hf.FileRef("input", sub, name), data)

    async def remove(self, files: Sequence[hf.FileRef]) -> None:
        for ref in files:
            if not hf.safe_path(ref.path):
                continue
            resp = await self._send("DELETE", hf.file_route(ref))
            if resp.status_code in NO_AGENT:  # a plain ComfyUI: overwrite what we cannot delete
                await self._upload(ref, hf.BLANK_PNG)
            elif resp.status_code != 200:
                raise ComfyError(f"DELETE {hf.FILES_ROUTE}/{ref.folder}/...: HTTP {resp.status_code}")

    async def wipe(self) -> bool:
        resp = await self._send("DELETE", hf.FILES_ROUTE)
        if resp.status_code in NO_AGENT:
            return False
        if resp.status_code != 200:
            raise ComfyError(f"DELETE {hf.FILES_ROUTE}: HTTP {resp.status_code}")
        return True


def host_files_of(outputs: dict[str, Any]) -> list[hf.FileRef]:
    """Files a prompt wrote on its instance, from history's ``outputs`` (node id -> UI output)."""
    found: list[hf.FileRef] = []
    for out in outputs.values():
        if not isinstance(out, dict):
            continue
        for key in ("images", "gifs", "videos", "audio", "files", "3d"):
            for f in out.get(key) or []:
                folder = f.get("type", "output") if isinstance(f, dict) else None
                if folder in ("output", "temp") and isinstance(f.get("filename"), str) and f["filename"]:
                    found.append(hf.FileRef(folder, str(f.get("subfolder") or ""), f["filename"]))
    return found
