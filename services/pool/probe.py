"""Readiness probing of a ComfyUI host: answers, has the required models, ran the warm-up."""

from __future__ import annotations

from typing import Any, NamedTuple, Protocol

import httpx

from libs.events import codec
from libs.events.pool import Readiness


class ProbeResult(NamedTuple):
    """Whether the host is ready, the checkpoints it has, and why not when it is not."""

    ready: bool
    models: tuple[str, ...] = ()
    detail: str = ""


class ComfyProbe(Protocol):
    """The port the reconciler probes instances through."""

    async def probe(self, base_url: str, readiness: Readiness) -> ProbeResult:
        """Probe one host once."""
        ...


def checkpoints_of(object_info: dict[str, Any]) -> tuple[str, ...]:
    """Checkpoint names ComfyUI offers in CheckpointLoaderSimple (empty when it has none)."""
    node = object_info.get("CheckpointLoaderSimple") or {}
    choices = ((node.get("input") or {}).get("required") or {}).get("ckpt_name") or [[]]
    first = choices[0] if choices else []
    return tuple(str(c) for c in first) if isinstance(first, list) else ()


class HttpComfyProbe:
    """Probes over HTTP: /system_stats, /object_info/CheckpointLoaderSimple, an optional warm-up."""

    def __init__(self, client: httpx.AsyncClient | None = None, timeout: float = 5.0) -> None:
        self._client = client or httpx.AsyncClient(timeout=timeout)
        self._warmups: dict[str, str] = {}  # base_url -> prompt id of its warm-up run
        self._warm: set[str] = set()

    async def probe(self, base_url: str, readiness: Readiness) -> ProbeResult:
        """Probe one host once; network errors mean "not ready yet"."""
        base = base_url.rstrip("/")
        try:
            stats = await self._client.get(f"{base}/system_stats")
            if stats.status_code != 200:
                return ProbeResult(False, detail=f"system_stats answered {stats.status_code}")
            info = await self._client.get(f"{base}/object_info/CheckpointLoaderSimple")
            models = checkpoints_of(codec.loads(info.content)) if info.status_code == 200 else ()
            missing = [m for m in readiness.required_models if m not in models]
            if missing:
                return ProbeResult(False, models, f"loading model {missing[0]}")
            if readiness.warmup_workflow and base not in self._warm:
                return await self._warm_up(base, readiness.warmup_workflow, models)
            return ProbeResult(True, models)
        except (httpx.HTTPError, ValueError) as exc:
            return ProbeResult(False, detail=f"{type(exc).__name__}")

    async def _warm_up(self, base: str, workflow: dict[str, Any], models: tuple[str, ...]) -> ProbeResult:
        prompt_id = self._warmups.get(base)
        if prompt_id is None:
            resp = await self._client.post(f"{base}/prompt", content=codec.encode(
                {"prompt": workflow, "client_id": "stoker-warmup"}), headers={"content-type": "application/json"})
            if resp.status_code != 200:
                return ProbeResult(False, models, f"warm-up refused ({resp.status_code})")
            self._warmups[base] = codec.loads(resp.content)["prompt_id"]
            return ProbeResult(False, models, "warming up")
        history = codec.loads((await self._client.get(f"{base}/history/{prompt_id}")).content)
        entry = history.get(prompt_id)
        if not entry:
            return ProbeResult(False, models, "warming up")
        if entry.get("status", {}).get("status_str") != "success":
            self._warmups.pop(base, None)
            return ProbeResult(False, models, "warm-up failed")
        self._warm.add(base)
        return ProbeResult(True, models)

    async def aclose(self) -> None:
        """Close the HTTP client."""
        await self._client.aclose()
