"""What the browser tests share: the running stack's handle, a browser session with screenshots, and steps."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp

from services.audit.app import AuditService
from services.gateway.testing import ADMIN, ADMIN_KEY, PASSWORD

if TYPE_CHECKING:
    from playwright.async_api import BrowserContext, Page

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "test-artifacts" / "screenshots"
PLAYWRIGHT_MISSING = "browser tests need the playwright package: pip install playwright (never `playwright install`)"


@dataclass
class Stack:
    """A running stack: the gateway's URL, the simulator's, and an admin HTTP client."""

    url: str
    sim_url: str
    pool_id: str
    http: aiohttp.ClientSession
    audit: AuditService
    lan_url: str | None = None  # the same gateway on a non-loopback address, when this machine has one

    async def admin(self, method: str, path: str, body: Any = None, expect: int | None = None,
                    params: dict[str, str] | None = None) -> Any:
        """Call the API with the admin key; the decoded JSON."""
        async with self.http.request(method, self.url + path, json=body, params=params, headers=ADMIN) as resp:
            data = await resp.json(content_type=None)
            if expect is not None:
                assert resp.status == expect, (path, resp.status, data)
            return data

    async def new_user(self, prefix: str = "user", role: str = "user") -> tuple[str, str]:
        """Register an account through the admin API; (username, password)."""
        name = f"{prefix}-{uuid.uuid4().hex[:8]}"
        await self.admin("POST", "/api/v1/auth/register", {"username": name, "password": PASSWORD, "role": role},
                         expect=201)
        return name, PASSWORD

    async def sim_faults(self, **faults: int) -> None:
        """Force simulator faults for the next rentals (``POST /_sim/faults``)."""
        async with self.http.post(self.sim_url + "/_sim/faults", json=faults) as resp:
            assert resp.status == 200, await resp.text()


@dataclass
class Session:
    """One test's browser page, its screenshots, and what went wrong in it (uncaught errors, CSP refusals)."""

    page: Page
    context: BrowserContext
    name: str
    problems: list[str] = field(default_factory=list)
    shots: int = 0

    async def shot(self, label: str) -> Path:
        """Save a full-page screenshot: test-artifacts/screenshots/<test>-<nn>-<label>.png."""
        self.shots += 1
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{self.name}-{self.shots:02d}-{label}.png"
        await self.page.evaluate("window.scrollTo(0, 0)")  # sticky parts otherwise land mid-page in a full-page shot
        await self.page.screenshot(path=str(path), full_page=True)
        return path


EXPECTED_CONSOLE = re.compile(
    r"Failed to load resource: the server responded with a status of (401|403|404|409|422|429)"  # refusals shown in the page
    r"|The Cross-Origin-Opener-Policy header has been ignored"  # plain http on a LAN address (the loopback is trustworthy)
)


def unexpected_console_error(text: str) -> bool:
    """Console errors a test did not cause on purpose (the browser logs every refused fetch, for one)."""
    return not EXPECTED_CONSOLE.search(text)


async def sign_in_with_admin_key(s: Session, url: str = "/") -> None:
    """Open the UI and enter the admin key on the sign-in page, as an operator would."""
    await s.page.goto(url)
    await s.page.get_by_label("Admin key", exact=True).fill(ADMIN_KEY)
    await s.page.get_by_role("button", name="Use admin key").click()
    await s.page.get_by_role("heading", level=1, name="Pool").wait_for()
    await s.page.locator(".conn").get_by_text("Live").wait_for()
    await s.shot("pool")


async def sign_in(s: Session, username: str, password: str, url: str = "/") -> None:
    """Open the UI and sign in with an account, as a user would."""
    await s.page.goto(url)
    await s.page.get_by_label("Username").fill(username)
    await s.page.get_by_label("Password").fill(password)
    await s.page.get_by_role("button", name="Sign in", exact=True).click()
    await s.page.locator("#whoami").get_by_text(username).wait_for()


async def user_token(stack: Stack, username: str, password: str) -> dict[str, str]:
    """A second session of the same account, for reading what the browser did through the API."""
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as http, \
            http.post(stack.url + "/api/v1/auth/login", json={"username": username, "password": password}) as resp:
        assert resp.status == 200, await resp.text()
        return {"Authorization": f"Bearer {(await resp.json())['token']}"}


async def as_user(stack: Stack, headers: dict[str, str], method: str, path: str, body: Any = None) -> Any:
    """Call the API as that user; the decoded JSON (asserting a 2xx answer)."""
    async with stack.http.request(method, stack.url + path, json=body, headers=headers) as resp:
        data = await resp.json(content_type=None)
        assert resp.status < 300, (path, resp.status, data)
        return data
