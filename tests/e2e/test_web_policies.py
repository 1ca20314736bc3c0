"""An admin simulates the warm-pool policies on the pool's own demand, compares them, and applies one."""

from __future__ import annotations

import asyncio

import pytest

from tests.e2e.harness import PLAYWRIGHT_MISSING, Session, Stack, as_user, sign_in_with_admin_key, user_token

expect = pytest.importorskip("playwright.async_api", reason=PLAYWRIGHT_MISSING, exc_type=ImportError).expect

pytestmark = pytest.mark.timeout(90)


async def test_simulate_compare_and_apply_a_policy(stack: Stack, ui: Session) -> None:
    username, password = await stack.new_user("policyuser")
    token = await user_token(stack, username, password)
    job = await as_user(stack, token, "POST", "/api/v1/generations",
                        {"template": "txt2img", "prompt": "a lighthouse", "preset": "low", "steps": 4})
    async with asyncio.timeout(40):  # its claim and release are the demand the simulation replays
        while (await as_user(stack, token, "GET", f"/api/v1/generations/{job['id']}"))["status"] != "completed":
            await asyncio.sleep(0.3)

    page = ui.page
    await sign_in_with_admin_key(ui)
    await page.get_by_role("navigation", name="Main").get_by_role("link", name="Policies").click()
    await expect(page.get_by_role("heading", level=1, name="Policies")).to_be_visible()
    await expect(page.locator(".policy-current")).to_contain_text("none")

    await page.get_by_label("Days of history").fill("1")
    await page.get_by_label("Target p95 wait (s)").fill("600")
    await page.get_by_role("button", name="Simulate").click()
    table = page.get_by_role("table", name="Policies compared")
    await expect(table).to_contain_text("seed", timeout=30_000)
    await expect(table).to_contain_text("histogram")
    await expect(table).to_contain_text("time-of-week")
    await expect(page.get_by_text("Oracle (perfect foresight, zero wait)")).to_be_visible()
    await expect(page.locator(".policy-chosen")).to_contain_text("Cheapest meeting p95")
    await expect(table.locator("tr.chosen")).to_contain_text("suggested")
    await expect(page.get_by_role("img", name="live instances")).to_be_visible()
    await table.get_by_role("button", name="Chart of reactive(idle=60 s)").click()
    await expect(page.get_by_role("heading", level=3, name="reactive(idle=60 s)")).to_be_visible()
    await ui.shot("policies-simulated")

    await table.get_by_role("button", name="Apply seed", exact=True).click()
    dialog = page.get_by_role("dialog")
    await expect(dialog).to_contain_text("Apply seed?")
    await dialog.get_by_label("Reason (kept in the event)").fill("the old system, for now")
    await ui.shot("policies-apply-dialog")
    await dialog.get_by_role("button", name="Apply").click()
    await expect(page.locator(".policy-current")).to_contain_text("seed")
    decisions = page.get_by_role("table", name="Recent decisions")
    await expect(decisions).to_contain_text("seed", timeout=20_000)
    pool = await stack.admin("GET", "/api/v1/pool")
    assert pool["policy"]["kind"] == "seed" and pool["policy_decisions"][0]["reason"]
    await ui.shot("policies-applied")

    await page.get_by_role("button", name="Remove policy").click()  # leave the shared pool as it was
    await page.get_by_role("dialog").get_by_role("button", name="Remove").click()
    await expect(page.locator(".policy-current")).to_contain_text("none")
    assert (await stack.admin("GET", "/api/v1/pool"))["policy"] is None
    assert not ui.problems, ui.problems
