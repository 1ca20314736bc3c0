"""Run named child processes, restart the ones that die (with capped backoff), stop them all on shutdown."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from libs.stack.base import EmbeddedServer

log = logging.getLogger("stoker.supervisor")


@dataclass(frozen=True)
class ServiceSpec:
    """One supervised child: its name, argv and full environment (secrets go here, never in argv)."""

    name: str
    argv: tuple[str, ...]
    env: Mapping[str, str] = field(repr=False)
    ready_port: int | None = None  # a loopback port the child listens on, if any


@dataclass(frozen=True)
class Backoff:
    """Restart delays: `initial`, multiplied by `factor` per quick crash, capped; reset after a stable run."""

    initial: float = 1.0
    factor: float = 2.0
    cap: float = 30.0
    stable_after: float = 30.0

    def next_delay(self, previous: float | None, uptime: float) -> float:
        """The delay before the next restart, given the previous delay and how long the child ran."""
        if previous is None or uptime >= self.stable_after:
            return self.initial
        return min(previous * self.factor, self.cap)


def _signal_group(pid: int, sig: int) -> None:
    # Each child leads its own session, so its process group holds it and anything it spawned.
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


class Supervisor:
    """Keeps services running until `stop()`; children get their own session and their config via env."""

    def __init__(self, *, backoff: Backoff = Backoff(), stop_timeout: float = 10.0) -> None:
        self.backoff = backoff
        self.stop_timeout = stop_timeout
        self.restarts: dict[str, int] = {}
        self._procs: dict[str, asyncio.subprocess.Process] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._stopping = asyncio.Event()

    def pid(self, name: str) -> int | None:
        """The current pid of a running service, if any."""
        proc = self._procs.get(name)
        return proc.pid if proc is not None and proc.returncode is None else None

    async def start(self, spec: ServiceSpec) -> None:
        """Spawn a service and keep it alive until `stop()`."""
        if spec.name in self._tasks:
            raise ValueError(f"service {spec.name} is already supervised")
        self.restarts[spec.name] = 0
        proc = await self._spawn(spec)
        self._tasks[spec.name] = asyncio.create_task(self._watch(spec, proc), name=f"supervise-{spec.name}")

    async def _spawn(self, spec: ServiceSpec) -> asyncio.subprocess.Process:
        proc = await asyncio.create_subprocess_exec(
            *spec.argv, env=dict(spec.env), stdin=asyncio.subprocess.DEVNULL, start_new_session=True
        )
        self._procs[spec.name] = proc
        log.info("service %s started (pid %s)", spec.name, proc.pid)
        return proc

    async def _watch(self, spec: ServiceSpec, first: asyncio.subprocess.Process) -> None:
        loop = asyncio.get_running_loop()
        delay: float | None = None
        proc: asyncio.subprocess.Process | None = first
        while True:
            started = loop.time()
            if proc is not None:
                code = await proc.wait()
                _signal_group(proc.pid, signal.SIGKILL)  # reap whatever the child left behind
                if self._stopping.is_set():
                    log.info("service %s stopped with code %s", spec.name, code)
                    return
                outcome = f"exited with code {code}"
            else:
                outcome = "could not be spawned"
            delay = self.backoff.next_delay(delay, loop.time() - started)
            log.warning("service %s %s; restarting in %.1fs", spec.name, outcome, delay)
            try:
                await asyncio.wait_for(self._stopping.wait(), delay)
                return
            except TimeoutError:
                pass
            self.restarts[spec.name] += 1
            try:
                proc = await self._spawn(spec)
            except OSError as exc:
                log.error("service %s: %s", spec.name, exc)
                proc = None
                continue
            if self._stopping.is_set():
                _signal_group(proc.pid, signal.SIGTERM)

    async def stop(self) -> None:
        """SIGTERM every service, wait up to `stop_timeout`, SIGKILL the rest; leaves no children."""
        self._stopping.set()
        for proc in self._procs.values():
            if proc.returncode is None:
                _signal_group(proc.pid, signal.SIGTERM)
        tasks = list(self._tasks.values())
        if not tasks:
            return
        _, pending = await asyncio.wait(tasks, timeout=self.stop_timeout)
        for name, task in self._tasks.items():
            proc = self._procs[name]
            if task in pending and proc.returncode is None:
                log.warning("service %s did not stop within %.1fs; killing it", name, self.stop_timeout)
                _signal_group(proc.pid, signal.SIGKILL)
        await asyncio.gather(*tasks, return_exceptions=True)


async def watch_server(server: EmbeddedServer, stopping: asyncio.Event, *, every: float = 0.5,
                       backoff: Backoff = Backoff(initial=0.5, cap=10.0)) -> None:
    """Restart an embedded server (NATS, PostgreSQL) whenever it dies, until ``stopping`` is set.

    Each restart is logged and awaited until the server accepts connections again; repeated failures
    back off like a service's restarts.
    """
    loop = asyncio.get_running_loop()
    delay: float | None = None
    started = loop.time()
    while not stopping.is_set():
        if server.running:
            try:
                await asyncio.wait_for(stopping.wait(), every)
            except TimeoutError:
                pass
            continue
        delay = backoff.next_delay(delay, loop.time() - started)
        log.warning("%s exited with code %s; restarting in %.1fs", server.name, server.exit_code, delay)
        try:
            await asyncio.wait_for(stopping.wait(), delay)
            return
        except TimeoutError:
            pass
        started = loop.time()
        try:
            await server.start()
        except Exception as exc:  # logged; the next round tries again after a longer delay
            log.error("%s did not come back: %s", server.name, exc)
            continue
        log.info("%s restarted and ready (pid %s)", server.name, server.pid)
