"""The agent's shell: plan the models, download them, start ComfyUI, watch it; state via ``phases.evolve``."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Protocol

import aiohttp

from . import phases
from .comfy import Comfy, comfy_version
from .download import DownloadError
from .files import HostFiles
from .models import ModelFile, redact_url

log = logging.getLogger("stoker.agent")
HEALTH_EVERY_S = 1.0
START_TIMEOUT_S = 600.0


class Fetcher(Protocol):
    """Downloads one model (the real Downloader, or the simulator's)."""

    async def fetch(self, model: ModelFile, folder: Path, on_progress: Callable[[int, int | None], None]
                    ) -> tuple[str, int]:
        """Download ``model`` into ``folder``; returns (file name, size). Raises DownloadError."""
        ...


class Agent:
    """One host's agent: its state, its own log, and the tasks that move it along."""

    def __init__(self, *, secret: str, models: list[ModelFile], comfy: Comfy, files: HostFiles, fetcher: Fetcher,
                 session: aiohttp.ClientSession, gpus: Callable[[], Awaitable[list[dict[str, Any]]]] | None = None,
                 log_lines: int = 2000, health_every_s: float = HEALTH_EVERY_S,
                 prepare: tuple[str, Callable[[], Awaitable[None]]] | None = None) -> None:
        self.secret, self.models, self.comfy, self.files = secret, models, comfy, files
        self.fetcher, self.session = fetcher, session
        self._gpus = gpus
        self.state = phases.AgentState()
        self.log: collections.deque[str] = collections.deque(maxlen=log_lines)
        self._health_every = health_every_s
        self._prepare = prepare  # (what it is, step): e.g. installing ComfyUI, run before anything else
        self._task: asyncio.Task[None] | None = None
        self.changed = asyncio.Event()

    def apply(self, event: phases.AgentEvent) -> None:
        """Fold one event into the state; log phase changes."""
        before = self.state
        self.state = phases.evolve(self.state, event)
        if self.state.phase != before.phase or self.state.reason != before.reason:
            self.note(f"phase {self.state.phase}" + (f": {self.state.reason}" if self.state.reason else ""))
        self.changed.set()

    def note(self, line: str) -> None:
        """One line of the agent's own log (also to the process log)."""
        self.log.append(f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} {line}")
        log.info("%s", line)

    def plan(self) -> phases.Planned:
        """What must be downloaded: every listed model not already present."""
        files = []
        for m in self.models:
            size = self.files.model_size(m.folder, m.name)
            files.append(phases.FileProgress(folder=m.folder, name=m.key, state="done" if size is not None else
                                             "pending", done=size or 0, total=size))
        return phases.Planned(tuple(files))

    async def start(self) -> None:
        """Run the boot sequence in the background."""
        self._task = asyncio.create_task(self._run(), name="stoker-agent")

    async def _run(self) -> None:
        try:
            if self._prepare is not None:
                what, step = self._prepare
                self.apply(phases.Booting(what))
                try:
                    await step()
                except (OSError, RuntimeError) as exc:
                    self.apply(phases.Failed(f"{what} failed: {exc}"))
                    return
            self.apply(self.plan())
            for model in self.models:
                if self.state.phase == "failed":
                    return
                if self.files.model_size(model.folder, model.name) is None:
                    await self._download(model)
            if self.state.phase == "failed":
                return
            self.apply(phases.ComfyStarting())
            try:
                await self.comfy.start(lambda code: self.apply(phases.ComfyExited(code)))
            except (OSError, RuntimeError) as exc:
                self.apply(phases.Failed(f"cannot start ComfyUI: {exc}"))
                return
            await self._watch()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - the status must say why, not the agent die silently
            log.exception("agent failed")
            self.apply(phases.Failed(f"agent error: {type(exc).__name__}: {exc}"))

    async def _download(self, model: ModelFile) -> None:
        if model.url is None:
            self.apply(phases.Failed(f"model {model.key} is not on this host and has no download URL; give its "
                                     "URL in template.models or use an image that has it", model.key))
            return
        self.note(f"downloading {model.key} from {redact_url(model.url)}")
        last = [0.0]

        def progress(done: int, total: int | None) -> None:
            now = time.monotonic()
            if now - last[0] >= 0.2 or (total is not None and done >= total):
                last[0] = now
                self.apply(phases.Progress(model.key, done, total))

        try:
            _, size = await self.fetcher.fetch(model, self.files.model_dir(model.folder), progress)
        except DownloadError as exc:
            self.apply(phases.Failed(str(exc), model.key))
            return
        self.apply(phases.FileDone(model.key, size))

    async def _watch(self) -> None:
        """Poll ComfyUI: up → ready; the supervisor reports exits."""
        started = time.monotonic()
        while self.state.phase != "failed":
            if self.state.phase == "starting_comfyui":
                version = await comfy_version(self.session, self.comfy.url)
                if version is not None:
                    self.apply(phases.ComfyUp(version))
                    started = time.monotonic()
                elif time.monotonic() - started > START_TIMEOUT_S:
                    self.apply(phases.Failed(f"ComfyUI did not answer within {START_TIMEOUT_S:.0f}s; "
                                             "see GET /agent/logs"))
            elif self.state.phase == "ready":
                started = time.monotonic()
            await asyncio.sleep(self._health_every)

    async def status(self) -> dict[str, Any]:
        """The ``GET /agent/status`` body."""
        s = self.state
        done, total = phases.bytes_done(s)
        gpus = await self._gpus() if self._gpus is not None else []
        return {
            "phase": s.phase, "reason": s.reason, "comfyui_version": s.comfyui_version or None,
            "files": [{"folder": f.folder, "name": f.name, "state": f.state, "bytes_done": f.done,
                       "bytes_total": f.total} for f in s.files],
            "bytes_done": done, "bytes_total": total, "models": self.files.models(), "gpus": gpus,
            "disk_free_bytes": self.files.disk_free(), "comfyui_restarts": s.restarts,
        }

    async def stop(self) -> None:
        """Stop the boot task and ComfyUI."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.comfy.stop()
