"""With open registration (dev mode), the sign-in page lets a newcomer make their own account and signs them in."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from aiohttp import web

from services.gateway.app import create_app
from services.gateway.testing import PASSWORD, gateway_env
from tests.e2e.harness import PLAYWRIGHT_MISSING, Session, Stack

expect = pytest.importorskip("playwright.async_api", reason=PLAYWRIGHT_MISSING, exc_type=ImportError).expect

pytestmark = pytest.mark.timeout(60)


@pytest_asyncio.fixture
async def open_gateway(stack: Stack, nats_url: str, database_url: str) -> AsyncIterator[str]:
    """A second gateway on the same stack, in dev mode with STOKER_OPEN_REGISTRATION=1."""
    env = gateway_env(nats_url, database_url, STOKER_POOL_ID=stack.pool_id, STOKER_DEV="1",
                      STOKER_OPEN_REGISTRATION="1")
    runner = web.AppRunner(create_app(env), shutdown_timeout=1.0)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    host, port = runner.addresses[0][:2]
    try:
        yield f"http://{host}:{port}"
    finally:
        await runner.cleanup()


async def test_a_newcomer_makes_their_own_account(open_gateway: str, ui: Session) -> None:
    page = ui.page
    await page.goto(open_gateway + "/")
    card = page.get_by_role("region", name="New here?")
    await expect(card).to_be_visible()
    await ui.shot("open-registration")
    name = f"self-{uuid.uuid4().hex[:8]}"
    await card.get_by_label("New username").fill(name)
    await card.get_by_label("New password").fill(PASSWORD)
    await card.get_by_role("button", name="Create account").click()
    await expect(page.locator("#whoami")).to_contain_text(f"{name} (user)")
    await ui.shot("signed-in")
