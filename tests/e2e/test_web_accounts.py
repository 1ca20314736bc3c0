"""A signed-in admin account adds the admin key, creates an account in the UI; the new user signs in."""

from __future__ import annotations

import uuid

import pytest

from services.gateway.testing import ADMIN_KEY, PASSWORD
from tests.e2e.harness import PLAYWRIGHT_MISSING, Session, Stack

expect = pytest.importorskip("playwright.async_api", reason=PLAYWRIGHT_MISSING, exc_type=ImportError).expect

pytestmark = pytest.mark.timeout(60)


async def test_admin_key_page_and_creating_an_account(stack: Stack, ui: Session) -> None:
    username, password = await stack.new_user("ops")
    page = ui.page
    await page.goto("/#/admin/accounts")  # straight to an admin page: sign in first, then back here
    await page.get_by_label("Username").fill(username)
    await page.get_by_label("Password").fill(password)
    await page.get_by_role("button", name="Sign in", exact=True).click()
    await expect(page.get_by_role("heading", level=1, name="Accounts")).to_be_visible()
    await expect(page.get_by_text("This page needs the admin role.")).to_be_visible()
    await ui.shot("needs-admin")

    await page.get_by_role("link", name="admin key page").click()
    await page.get_by_label("Admin key", exact=True).fill("not-the-admin-key-000000000")
    await page.get_by_role("button", name="Use admin key").click()
    await expect(page.get_by_role("alert")).to_contain_text("invalid admin key")
    await page.get_by_label("Admin key", exact=True).fill(ADMIN_KEY)
    await page.get_by_role("button", name="Use admin key").click()
    await expect(page.get_by_role("status").filter(has_text="Admin key accepted")).to_be_visible()
    await expect(page.locator("#whoami")).to_contain_text(f"{username} (user) + admin key")
    await ui.shot("admin-key")

    nav = page.get_by_role("navigation", name="Main")
    await nav.get_by_role("link", name="Accounts").click()
    newcomer = f"new-{uuid.uuid4().hex[:8]}"
    await page.get_by_label("Username").fill(newcomer)
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Create account").click()
    await expect(page.get_by_role("table", name="Accounts created")).to_contain_text(newcomer)
    await page.get_by_label("Username").fill(newcomer)  # again: the API's refusal is shown
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Create account").click()
    await expect(page.get_by_role("alert")).to_contain_text("that username is taken")
    await ui.shot("accounts")

    await page.get_by_role("button", name="Sign out").click()  # ends the session and forgets the key
    await expect(page.get_by_role("heading", level=1, name="Sign in")).to_be_visible()
    assert await page.evaluate("sessionStorage.length") == 0
    await ui.shot("signed-out")
    await page.get_by_label("Username").fill(newcomer)
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Sign in", exact=True).click()
    await expect(page.locator("#whoami")).to_contain_text(f"{newcomer} (user)")
    await ui.shot("newcomer-home")
