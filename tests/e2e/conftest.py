"""The whole stack in-process, driven through a real browser: Playwright over Debian's Chromium.

One stack for the session (real NATS and PostgreSQL from tests/conftest.py, the audit service,
the pool service renting from the marketplace simulator, the generation service with a worker
that asks the pool for instances as jobs wait, and the gateway serving ``web/`` on a loopback
port); a fresh browser context per test. Every page a test visits is screenshotted
into ``test-artifacts/screenshots/``. Without Chromium or the playwright package the browser
tests skip, saying why.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import socket
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import nats
import pytest
import pytest_asyncio
from aiohttp import web

from services.audit.app import AuditService
from services.audit.config import AuditConfig
from services.audit.testing import fresh_database
from services.gateway.app import create_app
from services.gateway.testing import (
    FAST_READINESS,
    FAST_SIM,
    gateway_env,
    generation_on,
    unique_pool_id,
)
from services.generation.testing import FAST_GEN_ENV, MODELS
from tests.e2e.harness import (
    PLAYWRIGHT_MISSING,
    Session,
    Stack,
    unexpected_console_error,
)

try:
    from playwright.async_api import async_playwright
except ImportError:  # the browser tests skip, saying why
    async_playwright = None

HERE = Path(__file__).resolve().parent
CHROMIUM = Path(os.environ.get("STOKER_E2E_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--no-first-run", "--disable-dev-shm-usage"]
STEP_TIMEOUT_MS = 15_000  # any single browser wait


def browser_missing() -> str | None:
    """Why the browser tests cannot run here, or None."""
    if async_playwright is None:
        return PLAYWRIGHT_MISSING
    if not CHROMIUM.exists():
        return f"browser tests need Chromium at {CHROMIUM}: apt-get install chromium (or set STOKER_E2E_CHROMIUM)"
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip every browser test, before any stack starts, when there is no browser to drive."""
    reason = browser_missing()
    if reason is None:
        return
    for item in items:
        if item.path.is_relative_to(HERE) and "browser" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.skip(reason=reason))


def lan_address() -> str | None:
    """This machine's address on its default route (no packet is sent), or None without one."""
    with contextlib.suppress(OSError), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect(("192.0.2.1", 9))  # TEST-NET-1: only the routing table is consulted
        address = probe.getsockname()[0]
        return None if address.startswith("127.") or address == "0.0.0.0" else address
    return None


async def _serve(app: web.Application) -> tuple[web.AppRunner, str, str | None]:
    """Serve on a loopback port, and on this machine's LAN address too when it has one (a non-loopback peer)."""
    runner = web.AppRunner(app, shutdown_timeout=1.0)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    host, port = runner.addresses[0][:2]
    lan_url = None
    if (lan := lan_address()) is not None:
        with contextlib.suppress(OSError):
            await web.TCPSite(runner, lan, 0).start()
            lan_host, lan_port = runner.addresses[-1][:2]
            lan_url = f"http://{lan_host}:{lan_port}"
    return runner, f"http://{host}:{port}", lan_url


@pytest_asyncio.fixture(scope="session")
async def stack(nats_url: str, database_url: str) -> AsyncIterator[Stack]:
    """Audit service, pool on the simulator, generation service and the gateway serving the UI, for the session."""
    from services.pool import api
    from services.pool.app import PoolService, ServiceConfig
    from services.pool.providers.vastai import VastAIProvider
    from services.pool.sim.config import SimConfig
    from services.pool.sim.server import start_sim

    dsn = await fresh_database(database_url, "e2eweb")
    token = uuid.uuid4().hex[:10]
    audit_env = {"AUDIT_HMAC_KEY": "e2e-audit-key-" + token, "AUDIT_CHAIN": f"e{token}", "AUDIT_DURABLE": f"audit-e{token}",
                 "AUDIT_START": "new", "AUDIT_ANCHOR_SECONDS": "1", "AUDIT_PRUNE_INTERVAL_S": "3600"}
    pool_id = unique_pool_id()
    env = gateway_env(nats_url, dsn, STOKER_POOL_ID=pool_id, AUDIT_CHAIN=audit_env["AUDIT_CHAIN"])  # no audit key
    audit = AuditService(AuditConfig.from_mapping({**env, **audit_env}))
    await asyncio.wait_for(audit.start(), 20)
    nc = await nats.connect(nats_url)
    market = await start_sim(SimConfig(**FAST_SIM))
    provider = VastAIProvider("sim-key", market.url, retries=8)
    pool = PoolService(nc, nc.jetstream(), provider, config=ServiceConfig(
        pool_id=pool_id, replica="e2e", reconcile_interval_s=0.2, leader_ttl_s=1.5, listing_grace_s=3.0, rent_grace_s=4.0))
    # Instances come with a checkpoint (so templates run), ready only once it is there.
    models = {"template": {"models": list(MODELS)},
              "readiness": {**FAST_READINESS["readiness"], "required_models": list(MODELS)}}
    try:
        async with contextlib.AsyncExitStack() as services:  # stops them in reverse order
            services.push_async_callback(pool.stop)
            await pool.start()
            await pool.commands.configure(api.ConfigureRequest(changes=models))
            await services.enter_async_context(generation_on(nats_url, pool_id, **FAST_GEN_ENV, STOKER_GEN_WORKER="1"))
            runner, url, lan_url = await _serve(create_app(env))
            services.push_async_callback(runner.cleanup)
            async with aiohttp.ClientSession() as http:
                yield Stack(url=url, sim_url=market.url, pool_id=pool_id, http=http, audit=audit, lan_url=lan_url)
    finally:
        await provider.aclose()
        await market.close()
        await nc.close()
        await asyncio.wait_for(audit.stop(), 20)


@pytest_asyncio.fixture(scope="session")
async def browser() -> AsyncIterator[Any]:
    """Debian's Chromium, headless, for the session (skips when it or playwright is missing)."""
    reason = browser_missing()
    if reason is not None:
        pytest.skip(reason)
    async with async_playwright() as pw:
        chromium = await pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        yield chromium
        await chromium.close()


@pytest_asyncio.fixture
async def ui(browser: Any, stack: Stack, request: pytest.FixtureRequest) -> AsyncIterator[Session]:
    """A fresh browser context (no cookies, no sessionStorage) and page on the stack's gateway."""
    context = await browser.new_context(base_url=stack.url, viewport={"width": 1280, "height": 900},
                                        accept_downloads=True)
    context.set_default_timeout(STEP_TIMEOUT_MS)
    page = await context.new_page()
    name = re.sub(r"[^A-Za-z0-9_]+", "_", request.node.name.removeprefix("test_"))[:60]
    session = Session(page=page, context=context, name=name)
    page.on("pageerror", lambda exc: session.problems.append(f"uncaught: {exc}"))
    page.on("console", lambda msg: session.problems.append(f"console: {msg.text}")
            if msg.type == "error" and unexpected_console_error(msg.text) else None)
    try:
        yield session
    finally:
        with contextlib.suppress(Exception):
            await context.close()
    assert not session.problems, session.problems
