"""Readiness probing of a host: through its Stoker agent (phase, models, progress), or plain ComfyUI.

A rented host runs the agent: the probe asks ``GET /agent/status`` with the instance secret and
the host is ready when the agent says ``ready`` and every required model is present; the
warm-up runs through the agent's proxy. A host without an agent (the ``static`` provider) is
probed as plain ComfyUI.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Protocol

import httpx

from libs.events import codec
from libs.events.pool import Readiness


class AgentStatus(NamedTuple):
    """What the host's agent said (``unreachable`` when it did not answer)."""

    phase: str
    reason: str = ""
    bytes_done: int = 0
    bytes_total: int | None = None
    comfyui_version: str = ""


class ProbeResult(NamedTuple):
    """Whether the host is ready, the checkpoints it has, and why not when it is not."""

    ready: bool
    models: tuple[str, ...] = ()
    detail: str = ""
    agent: AgentStatus | None = None
    error: str = ""  # the probe itself failed (network, HTTP status): "" when it got an answer


class ComfyProbe(Protocol):
    """The port the reconciler probes instances through."""

    async def probe(self, base_url: str, readiness: Readiness, secret: str | None = None) -> ProbeResult:
        """Probe one host once; ``secret`` is the instance secret of an agent host (None: plain ComfyUI)."""
        ...


def checkpoints_of(object_info: dict[str, Any]) -> tuple[str, ...]:
    """Checkpoint names ComfyUI offers in CheckpointLoaderSimple (empty when it has none)."""
    node = object_info.get("CheckpointLoaderSimple") or {}
    choices = ((node.get("input") or {}).get("required") or {}).get("ckpt_name") or [[]]
    first = choices[0] if choices else []
    return tuple(str(c) for c in first) if isinstance(first, list) else ()


def agent_status(body: Any) -> tuple[AgentStatus, tuple[str, ...]]:
    """The agent's status and its checkpoints from a ``/agent/status`` body (ValueError when malformed)."""
    if not isinstance(body, dict) or not isinstance(body.get("phase"), str):
        raise ValueError("not an agent status")
    models = body.get("models") if isinstance(body.get("models"), dict) else {}
    total = body.get("bytes_total")
    status = AgentStatus(phase=body["phase"], reason=str(body.get("reason") or "")[:500],
                         bytes_done=int(body.get("bytes_done") or 0),
                         bytes_total=int(total) if isinstance(total, int) else None,
                         comfyui_version=str(body.get("comfyui_version") or ""))
    return status, tuple(str(m) for m in models.get("checkpoints") or [])


class HttpComfyProbe:
    """Probes over HTTP: the agent's status (or /system_stats and object_info), then an optional warm-up."""

    def __init__(self, client: httpx.AsyncClient | None = None, timeout: float = 5.0) -> None:
        self._client = client or httpx.AsyncClient(timeout=timeout)
        self._warmups: dict[str, str] = {}  # base_url -> prompt id of its warm-up run
        self._warm: set[str] = set()

    async def probe(self, base_url: str, readiness: Readiness, secret: str | None = None) -> ProbeResult:
        """Probe one host once; network errors mean "not ready yet"."""
        base = base_url.rstrip("/")
        headers = {"Authorization": f"Bearer {secret}"} if secret else {}
        try:
            if secret:
                resp = await self._client.get(f"{base}/agent/status", headers=headers)
                if resp.status_code != 200:
                    return ProbeResult(False, detail=f"agent answered {resp.status_code}",
                                       agent=AgentStatus("unreachable"), error=f"agent answered {resp.status_code}")
                status, models = agent_status(codec.loads(resp.content))
                if status.phase != "ready":
                    return ProbeResult(False, models, status.reason or status.phase, agent=status)
            else:
                status = None
                stats = await self._client.get(f"{base}/system_stats")
                if stats.status_code != 200:
                    return ProbeResult(False, detail=f"system_stats answered {stats.status_code}",
                                       error=f"system_stats answered {stats.status_code}")
                info = await self._client.get(f"{base}/object_info/CheckpointLoaderSimple")
                models = checkpoints_of(codec.loads(info.content)) if info.status_code == 200 else ()
            missing = [m for m in readiness.required_models if m not in models]
            if missing:
                return ProbeResult(False, models, f"loading model {missing[0]}", agent=status)
            if readiness.warmup_workflow and base not in self._warm:
                result = await self._warm_up(base, readiness.warmup_workflow, models, headers)
                return result._replace(agent=status)
            return ProbeResult(True, models, agent=status)
        except (httpx.HTTPError, ValueError) as exc:
            return ProbeResult(False, detail=f"{type(exc).__name__}", agent=AgentStatus("unreachable") if secret
                               else None, error=type(exc).__name__)

    async def _warm_up(self, base: str, workflow: dict[str, Any], models: tuple[str, ...],
                       headers: dict[str, str]) -> ProbeResult:
        prompt_id = self._warmups.get(base)
        if prompt_id is None:
            resp = await self._client.post(f"{base}/prompt", content=codec.encode(
                {"prompt": workflow, "client_id": "stoker-warmup"}),
                headers={"content-type": "application/json", **headers})
            if resp.status_code != 200:
                return ProbeResult(False, models, f"warm-up refused ({resp.status_code})")
            self._warmups[base] = codec.loads(resp.content)["prompt_id"]
            return ProbeResult(False, models, "warming up")
        history = codec.loads((await self._client.get(f"{base}/history/{prompt_id}", headers=headers)).content)
        entry = history.get(prompt_id)
        if not entry:
            return ProbeResult(False, models, "warming up")
        if entry.get("status", {}).get("status_str") != "success":
            self._warmups.pop(base, None)
            return ProbeResult(False, models, "warm-up failed")
        self._warm.add(base)
        return ProbeResult(True, models)

    async def logs(self, base_url: str, secret: str, tail: int) -> dict[str, Any]:
        """``GET /agent/logs?tail=N`` of an agent host (HTTPError / ValueError when it does not answer)."""
        resp = await self._client.get(f"{base_url.rstrip('/')}/agent/logs", params={"tail": str(tail)},
                                      headers={"Authorization": f"Bearer {secret}"})
        if resp.status_code != 200:
            raise ValueError(f"agent answered {resp.status_code}")
        body = codec.loads(resp.content)
        return {"agent": [str(x) for x in body.get("agent") or []], "comfyui": [str(x) for x in body.get("comfyui") or []]}

    async def aclose(self) -> None:
        """Close the HTTP client."""
        await self._client.aclose()
