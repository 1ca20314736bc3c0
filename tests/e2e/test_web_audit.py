"""The audit page lists records, filters and pages them, shows one in full, and verifies the chain."""

from __future__ import annotations

import pytest

from services.gateway.testing import ADMIN_ACTOR
from tests.e2e.harness import PLAYWRIGHT_MISSING, Session, Stack, sign_in_with_admin_key

expect = pytest.importorskip("playwright.async_api", reason=PLAYWRIGHT_MISSING, exc_type=ImportError).expect

pytestmark = pytest.mark.timeout(60)


async def test_audit_lists_pages_and_verifies(stack: Stack, ui: Session) -> None:
    users = [(await stack.new_user("audited"))[0] for _ in range(4)]  # 3 records each, by the admin key
    await stack.audit.wait_caught_up(20)
    page = ui.page
    await sign_in_with_admin_key(ui)
    await page.get_by_role("navigation", name="Main").get_by_role("link", name="Audit").click()
    await expect(page.get_by_role("heading", level=1, name="Audit")).to_be_visible()
    records = page.get_by_role("table", name="Audit records")
    await expect(records).to_contain_text("UserRegistered")  # newest first
    await ui.shot("audit")

    await page.get_by_label("Event type").fill("UserRegistered")
    await page.get_by_role("button", name="Apply filters").click()
    types = records.locator("tbody tr td:nth-child(3)")
    await expect(types.filter(has_not_text="UserRegistered")).to_have_count(0)  # waits for the filtered page
    await expect(types).not_to_have_count(0)
    first = records.locator("tbody tr").first
    await first.get_by_role("button", name="Details of record").click()
    payload = page.get_by_label("Record payload")
    await expect(payload).to_contain_text(users[-1])  # newest first: the last account registered
    await ui.shot("audit-filtered")

    await page.get_by_role("button", name="Clear").click()
    await page.get_by_label("Actor").fill(ADMIN_ACTOR)
    await page.get_by_label("Per page").select_option("10")
    async with page.expect_response(lambda r: "/api/v1/audit?" in r.url and "actor=" in r.url):
        await page.get_by_role("button", name="Apply filters").click()
    await expect(records.locator("tbody tr")).to_have_count(10)
    top = await records.locator("tbody tr th").first.inner_text()
    await page.get_by_role("button", name="Next page →").click()
    await expect(page.get_by_text("Page 2 ·")).to_be_visible()
    assert int(await records.locator("tbody tr th").first.inner_text()) < int(top)  # keyset: older records
    await page.get_by_role("button", name="← Previous page").click()
    await expect(records.locator("tbody tr th").first).to_have_text(top)

    await page.get_by_role("button", name="Verify chain").click()
    verdict = page.get_by_role("status").filter(has_text="Verified")
    await expect(verdict).to_contain_text("intact")
    await expect(page.locator(".verify-report")).to_contain_text("record(s)")
    await ui.shot("audit-verified")
