"""A new user signs in, sees the navigation, manages an API token and signs out."""

from __future__ import annotations

import pytest

from tests.e2e.harness import PLAYWRIGHT_MISSING, Session, Stack

expect = pytest.importorskip("playwright.async_api", reason=PLAYWRIGHT_MISSING, exc_type=ImportError).expect

pytestmark = pytest.mark.timeout(60)


async def test_sign_in_tokens_and_sign_out(stack: Stack, ui: Session) -> None:
    username, password = await stack.new_user("alice")
    page = ui.page
    await page.goto("/")
    await expect(page.get_by_role("heading", level=1, name="Sign in")).to_be_visible()
    await expect(page.get_by_role("navigation", name="Main")).to_be_hidden()
    await ui.shot("signin")

    await page.get_by_label("Username").fill(username)
    await page.get_by_label("Password").fill("not the password")
    await page.get_by_role("button", name="Sign in", exact=True).click()
    alert = page.get_by_role("alert")
    await expect(alert).to_contain_text("wrong username or password")
    await ui.shot("signin-error")

    await page.get_by_label("Password").fill(password)
    await page.get_by_role("button", name="Sign in", exact=True).click()
    nav = page.get_by_role("navigation", name="Main")
    await expect(nav).to_be_visible()
    await expect(page.get_by_role("heading", level=1, name="Welcome")).to_be_visible()
    await expect(page.locator("#whoami")).to_contain_text(f"{username} (user)")
    await expect(nav.get_by_role("link", name="API tokens")).to_be_visible()
    await expect(nav.get_by_role("link", name="Pool")).to_have_count(0)  # not an admin
    for page_name in ("Studio", "Gallery", "Muses"):  # the gateway offers generations: their pages are listed
        await expect(nav.get_by_role("link", name=page_name)).to_be_visible()
        await expect(page.get_by_role("main").get_by_role("link", name=page_name)).to_be_visible()  # and on the home page
    await ui.shot("home")

    await nav.get_by_role("link", name="API tokens").click()
    await expect(page.get_by_role("heading", level=1, name="API tokens")).to_be_visible()
    await expect(page.get_by_text("No API tokens yet.")).to_be_visible()
    await page.get_by_label("Name").fill("ci-runner")
    await page.get_by_role("button", name="Create token").click()
    shown = page.locator("#new-token-value")
    await expect(shown).to_be_visible()
    token = await shown.input_value()
    assert len(token) > 20
    row = page.get_by_role("row").filter(has_text="ci-runner")
    await expect(row).to_have_count(1)
    await ui.shot("tokens-created")
    async with stack.http.get(stack.url + "/api/v1/auth/me", headers={"Authorization": f"Bearer {token}"}) as resp:
        assert resp.status == 200 and (await resp.json())["user"]["username"] == username

    await page.get_by_role("button", name="Done").click()
    await expect(shown).to_have_count(0)
    await row.get_by_role("button", name="Revoke token ci-runner").click()
    dialog = page.get_by_role("dialog", name="Revoke this token?")
    await expect(dialog).to_be_visible()
    await dialog.get_by_role("button", name="Revoke").click()
    await expect(page.get_by_text("No API tokens yet.")).to_be_visible()
    async with stack.http.get(stack.url + "/api/v1/auth/me", headers={"Authorization": f"Bearer {token}"}) as resp:
        assert resp.status == 401

    await page.get_by_role("button", name="Sign out").click()
    await expect(page.get_by_role("heading", level=1, name="Sign in")).to_be_visible()
    await expect(page.get_by_role("navigation", name="Main")).to_be_hidden()
    assert not [c for c in await ui.context.cookies() if c["name"] == "stoker_session"]
    await page.goto("/#/tokens")  # signed out: back to sign-in, remembering where to go
    await expect(page.get_by_role("heading", level=1, name="Sign in")).to_be_visible()
    assert "next=%2Ftokens" in page.url
    await ui.shot("signed-out")
