"""The real Stoker agent in front of each simulated ComfyUI, as on a rented GPU host.

The agent's code (phases, proxy, auth, status, files) runs unchanged; only its ports are the
simulator's: ComfyUI is the in-process ComfyHost on loopback, files live in that host's store,
and "downloads" take the simulated time the market gives each model.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path

import aiohttp
from aiohttp import web

from services.agent.download import DownloadError
from services.agent.models import ModelFile, space_refusal
from services.agent.runtime import Agent
from services.agent.web import build_app
from services.pool.sim.clock import Clock
from services.pool.sim.comfy_host import ComfyHost
from services.pool.sim.market import HostSpec

GB = 1024 ** 3
MODEL_BYTES = {"checkpoints": 2 * GB, "loras": 150 * 1024 ** 2, "vae": 330 * 1024 ** 2}
DISK_RESERVE = 5 * GB  # the image and ComfyUI itself


def model_bytes(folder: str) -> int:
    """The simulated size of a model file of ``folder``."""
    return MODEL_BYTES.get(folder, 1 * GB)


class SimComfy:
    """The agent's Comfy port over the simulated host (already listening; it boots on its own schedule)."""

    def __init__(self, host: ComfyHost, log_tail: Callable[[int], list[str]]) -> None:
        self.host, self.url, self._tail = host, host.url, log_tail

    async def start(self, on_exit: Callable[[int | None], None]) -> None:
        return None

    def log_tail(self, lines: int) -> list[str]:
        return self._tail(lines)

    async def stop(self) -> None:
        return None


class SimFiles:
    """The agent's HostFiles port over the simulated host's in-memory store."""

    def __init__(self, host: ComfyHost, disk_gb: float) -> None:
        self.host, self._disk = host, int(disk_gb * GB)

    def _key(self, kind: str, name: str) -> tuple[str, str, str]:
        sub, _, base = name.rpartition("/")
        return ("models/loras" if kind == "loras" else kind, sub, base)

    def put(self, kind: str, name: str, data: bytes) -> None:
        self.host.store[self._key(kind, name)] = data

    def get(self, kind: str, name: str) -> bytes | None:
        return self.host.store.get(self._key(kind, name))

    def delete(self, kind: str, name: str) -> bool:
        return self.host.store.pop(self._key(kind, name), None) is not None

    def wipe(self) -> list[str]:
        gone = [k for k in self.host.store if k[0] in ("input", "output", "temp")]
        for key in gone:
            del self.host.store[key]
        return sorted(f"{k}/{sub}/{n}" if sub else f"{k}/{n}" for k, sub, n in gone)

    def models(self) -> dict[str, list[str]]:
        folders = {folder for folder, _, _ in self.host.spec.models} | {"loras"}
        return {f: names for f in sorted(folders) if (names := self.host.files(f))}

    def model_size(self, folder: str, name: str) -> int | None:
        return model_bytes(folder) if name in self.host.files(folder) else None

    def model_dir(self, folder: str) -> Path:
        return Path("/ComfyUI/models") / folder

    def disk_free(self) -> int:
        used = sum(model_bytes(f) for f, _, _ in self.host.spec.models)
        return max(0, self._disk - DISK_RESERVE - used)


class SimFetcher:
    """Downloads that take the market's simulated time, with the agent's own disk-space rule."""

    def __init__(self, spec: HostSpec, clock: Clock, disk_gb: float, step: float) -> None:
        self._ready = {(f, n): at for f, n, at in spec.models}
        self._clock, self._step = clock, step
        self._free = int(disk_gb * GB) - DISK_RESERVE

    async def fetch(self, model: ModelFile, folder: Path, on_progress: Callable[[int, int | None], None]
                    ) -> tuple[str, int]:
        total = model_bytes(model.folder)
        refusal = space_refusal(model.key, total, self._free, 0)
        if refusal:
            raise DownloadError(refusal, retry=False)
        self._free -= total
        ready_at = self._ready.get((model.folder, model.name), self._clock.now())
        start = self._clock.now()
        while (now := self._clock.now()) < ready_at:
            on_progress(int(total * (now - start) / max(ready_at - start, 1e-9)), total)
            await self._clock.sleep(min(self._step, ready_at - now))
        on_progress(total, total)
        return model.name, total


class SimAgent:
    """One rental's agent: its app on its own loopback port, in front of ``host``."""

    def __init__(self, spec: HostSpec, host: ComfyHost, clock: Clock, session: aiohttp.ClientSession,
                 log_tail: Callable[[int], list[str]], step: float) -> None:
        models = [ModelFile(folder=f, name=n, url=f"https://sim.invalid/models/{f}/{n}") for f, n, _ in spec.models]
        self.agent = Agent(secret=spec.secret, models=models, comfy=SimComfy(host, log_tail),
                           files=SimFiles(host, spec.disk_gb), fetcher=SimFetcher(spec, clock, spec.disk_gb, step),
                           session=session, health_every_s=step)
        self._runner: web.AppRunner | None = None
        self.port = 0

    async def start(self, port: int = 0) -> int:
        """Serve on loopback ``port`` (a fresh one when 0 or taken) and start the agent's boot sequence; returns
        the port."""
        self._runner = web.AppRunner(build_app(self.agent), access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:  # the port this rental had before a restart is taken now
            sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        await web.SockSite(self._runner, sock).start()
        await self.agent.start()
        return self.port

    async def close(self) -> None:
        """Stop the agent and its server."""
        await self.agent.stop()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
