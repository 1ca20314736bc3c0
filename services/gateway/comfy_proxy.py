"""``/system_stats`` and ``/object_info`` of the pool's ComfyUI: fetched from a Ready instance, cached briefly.

When no instance answers, the last answer is served (stale is better than nothing for a
client discovering nodes); before any answer, a small built-in one (``X-Stoker-Source``
says which).
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp

from libs.events import codec
from services.gateway.errors import ApiError
from services.pool.view import PoolView

log = logging.getLogger("stoker.gateway")

TTL_S = {"/system_stats": 5.0, "/object_info": 60.0}
FETCH_TIMEOUT_S = 5.0
MAX_BYTES = 16 * 1024 * 1024
COMFYUI_VERSION = "0.3.64"  # what Stoker's instances run; a client checking versions sees a plausible one


class Answer:
    """A cached answer: when it was fetched, its JSON, and where it came from."""

    def __init__(self, at: float, data: Any, source: str) -> None:
        self.at, self.data, self.source = at, data, source


def checkpoints(pool: PoolView) -> list[str]:
    """Checkpoint file names the pool's instances are given or report."""
    names = list(pool.config.readiness.required_models)
    names += [url.rsplit("/", 1)[-1].split("?", 1)[0] for url in pool.config.template.models]
    for inst in pool.instances.values():
        if inst.phase in ("ready", "claimed"):
            names += inst.models
    return list(dict.fromkeys(n for n in names if n))


def fallback_stats() -> dict[str, Any]:
    """``system_stats`` when no instance has answered yet."""
    return {"system": {"os": "posix", "ram_total": 0, "ram_free": 0, "comfyui_version": COMFYUI_VERSION,
                       "required_frontend_version": "", "installed_templates_version": "",
                       "required_templates_version": "", "python_version": sys.version, "pytorch_version": "",
                       "embedded_python": False, "argv": ["stoker"]},
            "devices": []}


def fallback_object_info(pool: PoolView) -> dict[str, Any]:
    """A minimal ``object_info`` (the checkpoint loader with the pool's checkpoints, and SaveImage)."""
    def node(name: str, display: str, category: str, required: dict[str, Any], output: list[str],
             output_node: bool) -> dict[str, Any]:
        return {"input": {"required": required}, "input_order": {"required": list(required)}, "output": output,
                "output_is_list": [False] * len(output), "output_name": output, "name": name,
                "display_name": display, "description": "", "python_module": "nodes", "category": category,
                "output_node": output_node}

    return {
        "CheckpointLoaderSimple": node("CheckpointLoaderSimple", "Load Checkpoint", "loaders",
                                       {"ckpt_name": [checkpoints(pool), {}]}, ["MODEL", "CLIP", "VAE"], False),
        "SaveImage": node("SaveImage", "Save Image", "image",
                          {"images": ["IMAGE", {}], "filename_prefix": ["STRING", {"default": "ComfyUI"}]}, [], True),
    }


class InstanceInfo:
    """Answers of one Ready instance to read-only ComfyUI routes, cached for ``TTL_S`` seconds."""

    def __init__(self, pool_view: Callable[[], PoolView], *, clock: Callable[[], float] = time.monotonic,
                 access: Callable[[str], Awaitable[str]] | None = None) -> None:
        self._pool_view = pool_view
        self._access = access  # base URL -> the host's instance secret (asked of the pool; never kept or logged)
        self._clock = clock
        self._cache: dict[str, Answer] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    def base_url(self) -> str | None:
        """A Ready instance's ComfyUI (a busy one if none is idle)."""
        instances = sorted(self._pool_view().instances.values(), key=lambda i: i.phase != "ready")
        for inst in instances:
            if inst.phase in ("ready", "claimed") and inst.base_url:
                return inst.base_url.rstrip("/")
        return None

    async def _fetch(self, base_url: str, path: str) -> Any:
        timeout = aiohttp.ClientTimeout(total=FETCH_TIMEOUT_S)
        secret = await self._access(base_url) if self._access is not None else ""
        headers = {"Authorization": f"Bearer {secret}"} if secret else {}
        async with aiohttp.ClientSession(timeout=timeout) as session, \
                session.get(base_url + path, headers=headers) as resp:
            if resp.status != 200:
                raise ValueError(f"HTTP {resp.status}")
            if (resp.content_length or 0) > MAX_BYTES:
                raise ValueError("answer too large")
            body = bytearray()
            async for chunk in resp.content.iter_any():  # a single read() returns only what is buffered
                body += chunk
                if len(body) > MAX_BYTES:
                    raise ValueError("answer too large")
            data = codec.loads(bytes(body))
            if not isinstance(data, dict):
                raise ValueError("not a JSON object")
            return data

    async def get(self, path: str) -> Answer:
        """The answer to ``path`` (``/system_stats`` or ``/object_info``): fresh, stale or built in."""
        ttl = TTL_S[path]
        cached = self._cache.get(path)
        if cached is not None and self._clock() - cached.at < ttl:
            return cached
        async with self._locks.setdefault(path, asyncio.Lock()):
            cached = self._cache.get(path)
            if cached is not None and self._clock() - cached.at < ttl:
                return cached  # fetched while we waited
            base_url = self.base_url()
            if base_url is not None:
                try:
                    answer = Answer(self._clock(), await self._fetch(base_url, path), "instance")
                except (aiohttp.ClientError, TimeoutError, ValueError, OSError, ApiError) as exc:
                    log.info("ComfyUI %s from %s failed: %s", path, base_url, type(exc).__name__)
                else:
                    self._cache[path] = answer
                    return answer
        if cached is not None:
            return Answer(cached.at, cached.data, "cache")
        data = fallback_stats() if path == "/system_stats" else fallback_object_info(self._pool_view())
        return Answer(self._clock(), data, "fallback")
