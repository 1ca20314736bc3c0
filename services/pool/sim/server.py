"""Builds and runs the simulator: Vast API + control API on one port, a ComfyUI host per rental."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
from aiohttp import web

from services.pool.sim.agent_host import SimAgent
from services.pool.sim.clock import Clock, SystemClock
from services.pool.sim.comfy_host import ComfyHost
from services.pool.sim.config import SimConfig
from services.pool.sim.control_api import build_control_app
from services.pool.sim.market import HostSpec, Market
from services.pool.sim.persist import MarketFile
from services.pool.sim.snapshot import SimState, snapshot
from services.pool.sim.vast_api import build_vast_app


class SimServer:
    """A running simulator. ``url`` is the Vast base URL (no trailing slash)."""

    def __init__(self, config: SimConfig, clock: Clock, state_path: Path | None = None) -> None:
        self.market = Market(config, clock)
        self.market_file = MarketFile(state_path, self.market) if state_path is not None else None
        self.clock = clock
        self.hosts: dict[int, ComfyHost] = {}
        self.agents: dict[int, SimAgent] = {}  # the real Stoker agent in front of each host
        self._session: aiohttp.ClientSession | None = None
        self._host_specs: dict[int, HostSpec] = {}
        self._lock = asyncio.Lock()
        self._runner: web.AppRunner | None = None
        self._ticker: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[None]] = set()
        self.url = ""

    def state(self) -> SimState:
        """Snapshot of every rental, billing included (same as ``GET /_sim/state``)."""
        return snapshot(self.market)

    def billing_ids(self) -> list[int]:
        """Rentals still accruing charges, including zombies and ones not listed yet."""
        return self.market.billing_ids()

    async def reconcile(self) -> None:
        """Start ComfyUI hosts of rentals whose container runs; stop the rest."""
        async with self._lock:
            wanted = self.market.wanted_hosts()
            for iid in list(self.hosts):
                if iid not in wanted or wanted[iid] != self._host_specs[iid] or self.hosts[iid].dead:
                    await self._stop_host(iid)
            for iid, spec in wanted.items():
                if iid not in self.hosts:
                    await self._start_host(spec)

    async def _start_host(self, spec: HostSpec) -> None:
        iid = spec.instance_id
        host = ComfyHost(spec, lambda: self.market.config, self.clock,
                         should_die=lambda: self.market.take_mid_job_death(iid),
                         on_die=lambda: self._host_died(iid),
                         log=lambda line: self.market.append_log(iid, line))
        rental = self.market.instances.get(iid)
        before = rental.host_port if rental is not None else None  # set after a restart: keep the URL
        await host.start()
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None, sock_connect=5),
                                                  auto_decompress=False)
        agent = SimAgent(spec, host, self.clock, self._session,
                         lambda n: self.market.log_text(iid, n).splitlines(), self.market.config.tick_seconds)
        port = await agent.start(port=before or 0)
        self.hosts[iid], self.agents[iid], self._host_specs[iid] = host, agent, spec
        self.market.set_host_port(iid, port)

    async def _stop_host(self, iid: int) -> None:
        host = self.hosts.pop(iid)
        agent = self.agents.pop(iid, None)
        self._host_specs.pop(iid, None)
        self.market.set_host_port(iid, None)
        if agent is not None:
            await agent.close()
        await host.close()

    def _host_died(self, iid: int) -> None:
        with contextlib.suppress(Exception):
            self.market.vanish(iid)
        task = asyncio.get_running_loop().create_task(self.reconcile())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def reset(self, config: SimConfig) -> None:
        """Drop every rental and host and rebuild the market with ``config``."""
        async with self._lock:
            for iid in list(self.hosts):
                await self._stop_host(iid)
            self.market.reset(config)
            self.save()

    def save(self) -> None:
        """Persist the market if it is kept on disk and changed."""
        if self.market_file is not None:
            self.market_file.save()

    async def _tick(self) -> None:
        saved_at = time.monotonic()
        while True:
            await asyncio.sleep(self.market.config.tick_seconds)
            try:
                await self.reconcile()
                if self.market_file is not None and time.monotonic() - saved_at >= 1.0:  # logs, vanishings
                    self.save()
                    saved_at = time.monotonic()
            except Exception:  # noqa: BLE001 - the ticker must survive a bad tick
                pass

    async def start(self, host: str, port: int) -> None:
        """Bind and serve (restoring the saved market first, if it is kept on disk)."""
        if self.market_file is not None:
            self.market_file.load()

        @web.middleware
        async def persist(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                          ) -> web.StreamResponse:
            try:
                return await handler(request)
            finally:
                if request.method != "GET":
                    self.save()  # before the caller hears of a rental, it is on disk

        app = web.Application(middlewares=[persist])
        build_vast_app(app, self.market, self.reconcile)
        build_control_app(app, self.market, self.reconcile, self.reset)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        await web.SockSite(self._runner, sock).start()
        self.url = f"http://{host}:{sock.getsockname()[1]}"
        self._ticker = asyncio.create_task(self._tick())

    async def close(self) -> None:
        """Stop the ticker, every ComfyUI host and the API server."""
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
            self._ticker = None
        for task in list(self._background):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self.save()  # with the hosts' ports, which a restart reuses
        async with self._lock:
            for iid in list(self.hosts):
                await self._stop_host(iid)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> SimServer:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


async def start_sim(config: SimConfig | None = None, host: str = "127.0.0.1", port: int = 0,
                    clock: Clock | None = None, state_path: Path | None = None) -> SimServer:
    """Start the simulator on ``host:port`` (0 = any free port) and return it running.

    With ``state_path`` the market is restored from that file and saved to it as it changes.
    """
    server = SimServer(config or SimConfig(), clock or SystemClock(), state_path)
    await server.start(host, port)
    return server
