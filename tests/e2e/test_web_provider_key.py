"""The provider key form: accepted from this machine, refused clearly from another address, never kept."""

from __future__ import annotations

import pytest

from services.gateway.testing import ADMIN_KEY
from tests.e2e.harness import PLAYWRIGHT_MISSING, Session, Stack, sign_in_with_admin_key

expect = pytest.importorskip("playwright.async_api", reason=PLAYWRIGHT_MISSING, exc_type=ImportError).expect

pytestmark = pytest.mark.timeout(60)
SECRET = "vast-key-not-to-be-kept-0123456789"


async def test_provider_key_only_from_loopback(stack: Stack, ui: Session) -> None:
    if stack.lan_url is None:
        pytest.skip("this machine has no non-loopback address to reach the gateway from")
    page = ui.page
    await sign_in_with_admin_key(ui, stack.lan_url + "/")
    key = page.get_by_label("Vast.ai API key")
    await key.fill(SECRET)
    async with page.expect_response(lambda r: r.url.endswith("/api/v1/admin/tokens")) as answer:
        await page.get_by_role("button", name="Set provider key").click()
    assert (await answer.value).status == 403
    refusal = page.get_by_role("alert").filter(has_text="Not accepted from this address")
    await expect(refusal).to_contain_text("loopback")
    await expect(refusal).to_contain_text("127.0.0.1")
    await expect(key).to_have_value("")  # cleared, whatever the outcome
    stored = await page.evaluate("JSON.stringify({...sessionStorage}) + JSON.stringify({...localStorage})")
    assert SECRET not in stored and SECRET not in await page.content()
    await refusal.scroll_into_view_if_needed()
    await ui.shot("provider-key-refused")

    await page.goto(stack.url + "/")  # the same UI on loopback: a new origin, so the admin key again
    await page.get_by_label("Admin key", exact=True).fill(ADMIN_KEY)
    await page.get_by_role("button", name="Use admin key").click()
    await page.get_by_label("Vast.ai API key").fill("has a space in it")
    await page.get_by_role("button", name="Set provider key").click()  # refused by the API's own check
    await expect(page.get_by_role("alert")).to_contain_text("VALIDATION_FAILED")
    await page.get_by_label("Vast.ai API key").fill(SECRET)
    await page.get_by_role("button", name="Set provider key").click()
    await expect(page.get_by_role("status").filter(has_text="Provider key updated for vastai")).to_be_visible()
    await ui.shot("provider-key-set")
