"""The pool page says why the pool is not renting (issue 12 item 14): its problems, live."""

from __future__ import annotations

import pytest

from tests.e2e.harness import PLAYWRIGHT_MISSING, Session, Stack, sign_in_with_admin_key

expect = pytest.importorskip("playwright.async_api", reason=PLAYWRIGHT_MISSING, exc_type=ImportError).expect

pytestmark = pytest.mark.timeout(60)


async def test_a_pool_that_cannot_rent_says_why_on_its_page(stack: Stack, ui: Session) -> None:
    page = ui.page
    summary = await stack.admin("GET", "/api/v1/pool")
    before = summary["config"]
    live = sum(1 for i in summary["instances"] if i["state"] not in ("terminated", "failed"))
    await sign_in_with_admin_key(ui)
    await expect(page.locator(".conn")).to_have_text("Live")
    banner = page.locator("#pool-problems")
    await expect(banner).to_be_hidden()
    try:
        # One more than runs now (other tests share this pool), from a GPU nobody offers.
        await stack.admin("PUT", "/api/v1/pool/config", {"offer_filter": {"gpu_names": ["No Such GPU"]},
                                                          "desired_size": live + 1, "max_size": live + 1}, expect=200)
        await expect(banner).to_contain_text("no offers", timeout=20_000)  # pushed over SSE, no reload
        await expect(banner).to_contain_text("widen the filter")
        await ui.shot("pool-problem")
    finally:
        restore = {"offer_filter": {"gpu_names": before["offer_filter"]["gpu_names"]},
                   "desired_size": before["desired_size"], "max_size": before["max_size"]}
        await stack.admin("PUT", "/api/v1/pool/config", restore, expect=200)
    await expect(banner).to_be_hidden(timeout=20_000)
