"""Accounts in the browser: a signed-in admin account adds the admin key and creates an account; the accounts
list disables, enables, resets a password, shows and ends sessions and deletes; a user changes their password and
ends their other sessions; an admin makes a token for an account chosen by name."""

from __future__ import annotations

import uuid

import pytest

from services.gateway.testing import ADMIN_KEY, PASSWORD
from tests.e2e.harness import PLAYWRIGHT_MISSING, Session, Stack, sign_in, sign_in_with_admin_key, user_token

expect = pytest.importorskip("playwright.async_api", reason=PLAYWRIGHT_MISSING, exc_type=ImportError).expect

pytestmark = pytest.mark.timeout(90)
NEW_PASSWORD = "another fine passphrase"


async def me_status(stack: Stack, headers: dict[str, str]) -> int:
    async with stack.http.get(stack.url + "/api/v1/auth/me", headers=headers) as resp:
        return resp.status


async def test_admin_key_page_and_creating_an_account(stack: Stack, ui: Session) -> None:
    username, password = await stack.new_user("ops")
    page = ui.page
    await page.goto("/#/admin/accounts")  # straight to an admin page: sign in first, then back here
    await page.get_by_label("Username", exact=True).fill(username)
    await page.get_by_label("Password", exact=True).fill(password)
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
    await page.get_by_label("Username", exact=True).fill(newcomer)
    await page.get_by_label("Password", exact=True).fill(PASSWORD)
    await page.get_by_role("button", name="Create account").click()
    await expect(page.get_by_role("table", name="Accounts")).to_contain_text(newcomer)
    # After a successful create the emptied form is not marked invalid (no red fields).
    assert await page.locator("input:user-invalid").count() == 0
    await ui.shot("created")
    await page.get_by_label("Username", exact=True).fill(newcomer)  # again: the API's refusal is shown
    await page.get_by_label("Password", exact=True).fill(PASSWORD)
    await page.get_by_role("button", name="Create account").click()
    await expect(page.get_by_role("alert")).to_contain_text("that username is taken")
    await ui.shot("accounts")

    await page.get_by_role("button", name="Sign out").click()  # ends the session and forgets the key
    await expect(page.get_by_role("heading", level=1, name="Sign in")).to_be_visible()
    assert await page.evaluate("sessionStorage.length") == 0
    await ui.shot("signed-out")
    await page.get_by_label("Username", exact=True).fill(newcomer)
    await page.get_by_label("Password", exact=True).fill(PASSWORD)
    await page.get_by_role("button", name="Sign in", exact=True).click()
    await expect(page.locator("#whoami")).to_contain_text(f"{newcomer} (user)")
    await ui.shot("newcomer-home")


async def test_the_accounts_list_disables_resets_ends_sessions_and_deletes(stack: Stack, ui: Session) -> None:
    name, password = await stack.new_user("member")
    session = await user_token(stack, name, password)
    page = ui.page
    await sign_in_with_admin_key(ui)
    await page.get_by_role("navigation", name="Main").get_by_role("link", name="Accounts").click()
    table = page.get_by_role("table", name="Accounts")
    row = table.locator(f"tr[data-account='{name}']")
    await expect(row).to_contain_text("active")
    await expect(table.locator("tr", has_text="built-in")).to_contain_text("the admin key's account")
    await ui.shot("list")

    await row.get_by_role("button", name=f"Sessions of {name}").click()
    sessions = page.get_by_role("table", name=f"Sessions of {name}")
    await expect(sessions.get_by_role("button", name="End session")).to_have_count(1)
    await ui.shot("sessions")
    await sessions.get_by_role("button", name="End session").click()
    await page.get_by_role("dialog", name="End this session?").get_by_role("button", name="End session").click()
    await expect(page.get_by_role("status").filter(has_text="Session ended.")).to_be_visible()
    assert await me_status(stack, session) == 401

    await row.get_by_role("button", name=f"Disable {name}").click()
    await expect(row).to_contain_text("disabled")
    resp = await stack.http.post(stack.url + "/api/v1/auth/login", json={"username": name, "password": password})
    assert resp.status == 401
    await ui.shot("disabled")
    await row.get_by_role("button", name=f"Enable {name}").click()
    await expect(row).to_contain_text("active")

    await row.get_by_role("button", name=f"Reset the password of {name}").click()
    dialog = page.get_by_role("dialog", name=f"New password for {name}")
    await dialog.get_by_label("New password").fill(NEW_PASSWORD)
    await ui.shot("reset-dialog")
    await dialog.get_by_role("button", name="Set password").click()
    await expect(page.get_by_role("status").filter(has_text=f"Password of {name} set")).to_be_visible()
    await user_token(stack, name, NEW_PASSWORD)  # the new password works

    await row.get_by_role("button", name=f"Delete {name}").click()
    await page.get_by_role("dialog", name=f"Delete {name}?").get_by_role("button", name="Delete").click()
    await expect(page.get_by_role("status").filter(has_text=f"Account {name} deleted.")).to_be_visible()
    await expect(row).to_have_count(0)
    await ui.shot("deleted")


async def test_a_user_changes_their_password_and_ends_other_sessions(stack: Stack, ui: Session) -> None:
    name, password = await stack.new_user("owner")
    elsewhere = await user_token(stack, name, password)  # a session on another device
    page = ui.page
    await sign_in(ui, name, password)
    await page.get_by_role("navigation", name="Main").get_by_role("link", name="Your account").click()
    await expect(page.get_by_role("heading", level=1, name="Your account")).to_be_visible()
    mine = page.get_by_role("table", name="Your sessions")
    await expect(mine.get_by_role("row")).to_have_count(3)  # header, this one, the other device
    await expect(mine).to_contain_text("this one")
    await ui.shot("sessions")

    await page.get_by_label("Current password").fill("not my password")
    await page.get_by_label("New password").fill(NEW_PASSWORD)
    await page.get_by_role("button", name="Change password").click()
    await expect(page.get_by_role("alert")).to_contain_text("the current password is wrong")
    await page.get_by_label("Current password").fill(password)
    await page.get_by_label("New password").fill(NEW_PASSWORD)
    await page.get_by_role("button", name="Change password").click()
    await expect(page.get_by_role("status").filter(has_text="Password changed; 1 other session(s) ended.")).to_be_visible()
    assert await page.locator("input:user-invalid").count() == 0
    await expect(mine.get_by_role("row")).to_have_count(2)
    assert await me_status(stack, elsewhere) == 401
    await ui.shot("changed")


async def test_an_admin_makes_a_token_for_an_account_chosen_by_name(stack: Stack, ui: Session) -> None:
    name, password = await stack.new_user("robot")
    page = ui.page
    await sign_in_with_admin_key(ui)
    await page.get_by_role("navigation", name="Main").get_by_role("link", name="API tokens").click()
    owner = page.get_by_label("For account")
    await expect(owner.locator(f"option[value='{name}']")).to_have_count(1)
    await page.get_by_label("Name").fill("robot-ci")
    await owner.select_option(name)
    await page.get_by_role("button", name="Create token").click()
    token = await page.locator("#new-token-value").input_value()
    await expect(page.get_by_role("row").filter(has_text="robot-ci")).to_contain_text(name)
    await ui.shot("token-for-user")
    async with stack.http.get(stack.url + "/api/v1/auth/me", headers={"Authorization": f"Bearer {token}"}) as resp:
        assert (await resp.json())["user"]["username"] == name
