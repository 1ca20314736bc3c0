"""An operator prewarms an instance, watches it become Ready live, terminates it; then reads usage."""

from __future__ import annotations

import pytest

from tests.e2e.harness import PLAYWRIGHT_MISSING, Session, Stack, sign_in_with_admin_key

expect = pytest.importorskip("playwright.async_api", reason=PLAYWRIGHT_MISSING, exc_type=ImportError).expect

pytestmark = pytest.mark.timeout(60)


async def test_prewarm_ready_live_then_terminate(stack: Stack, ui: Session) -> None:
    page = ui.page
    reads: list[str] = []
    page.on("request", lambda r: reads.append(r.url) if "/api/v1/pool" in r.url and r.method == "GET"
            and "/join-tokens" not in r.url else None)  # the join-token list is read once, not polled
    await sign_in_with_admin_key(ui)
    await expect(page.locator(".conn")).to_have_text("Live")
    await expect(page.locator("#whoami")).to_contain_text("admin key")

    async with page.expect_response(lambda r: r.url.endswith("/api/v1/pool/prewarm")) as answer:
        await page.get_by_role("button", name="Prewarm").click()
    response = await answer.value
    assert response.status == 202, await response.text()
    [iid] = (await response.json())["instance_ids"]
    row = page.locator(f'tr[data-id="{iid}"]')
    await expect(row).to_be_visible()
    await expect(page.get_by_role("status").filter(has_text="Renting 1 instance")).to_be_visible()
    await expect(row.locator(".badge")).to_have_text("ready", timeout=30_000)  # pushed over SSE
    await expect(row).to_contain_text("RTX")  # its GPU
    await expect(row).to_contain_text("/h")  # and price
    await expect(page.get_by_role("list", name="Recent pool changes")).to_contain_text("Ready")
    assert reads == [], f"the pool page polled instead of following the stream: {reads}"
    await expect(row.locator("td.status")).to_have_text("ready")  # what the host's agent says
    await expect(row.locator("td.host")).to_contain_text("ssh -p")  # contract id and ssh access
    await ui.shot("pool-ready")
    await row.get_by_role("button", name=f"Logs of {iid}").click()
    logs = page.get_by_role("dialog")
    await expect(logs).to_contain_text("phase ready")  # the agent's own log, fetched through the pool
    await ui.shot("instance-logs")
    await logs.get_by_role("button", name="Close").click()

    await row.get_by_role("button", name=f"Terminate {iid}").click()
    dialog = page.get_by_role("dialog")
    await expect(dialog).to_contain_text("Terminate")
    await ui.shot("terminate-dialog")
    await dialog.get_by_role("button", name="Terminate").click()
    await expect(row).to_have_count(0, timeout=20_000)  # gone from the live table
    ended = page.get_by_role("table", name="Ended instances")
    await page.get_by_text("Ended in the last 24 h").click()
    await expect(ended).to_contain_text("terminated")
    await ui.shot("pool-terminated")

    await page.get_by_label("Idle timeout (seconds)").fill("600")
    await page.get_by_label("Spend cap ($ per UTC day)").fill("25")
    await page.get_by_label("GPU names").fill("RTX 4090, L40S")
    await page.get_by_role("button", name="Save settings").click()
    await expect(page.get_by_role("status").filter(has_text="Pool settings saved")).to_be_visible()
    config = (await stack.admin("GET", "/api/v1/pool"))["config"]
    assert config["idle_timeout_s"] == 600 and config["spend_caps"] == {"max_dph": None, "max_per_day": 25}
    assert config["offer_filter"]["gpu_names"] == ["RTX 4090", "L40S"]
    await expect(page.get_by_text("cap $25.00")).to_be_visible()  # the summary follows the change (SSE)
    await page.get_by_label("Maximum size").fill("0")  # below the desired size: the pool refuses, the page says why
    await page.get_by_label("Desired size").fill("1")
    await page.get_by_role("button", name="Save settings").click()
    await expect(page.get_by_role("alert")).to_contain_text("VALIDATION_FAILED")
    await page.get_by_role("button", name="Discard changes").click()
    await expect(page.get_by_label("Maximum size")).to_have_value("4")

    await page.get_by_label("Label").fill("studio boxes")
    await page.get_by_role("button", name="Make a join token").click()
    made = page.locator("#join-token-made")
    await expect(made).to_contain_text("stoker agent --join")
    await expect(made).to_contain_text("--token stj-")
    tokens = page.get_by_role("table", name="Join tokens")
    await expect(tokens).to_contain_text("studio boxes")
    await ui.shot("join-token")
    await tokens.get_by_role("button", name="Revoke studio boxes").click()
    await page.get_by_role("dialog").get_by_role("button", name="Revoke").click()
    await expect(tokens).to_contain_text("revoked")

    await page.get_by_role("navigation", name="Main").get_by_role("link", name="Usage").click()
    await expect(page.get_by_role("heading", level=1, name="Usage")).to_be_visible()
    chart = page.get_by_role("img", name="Cost per day")
    await expect(chart).to_be_visible()
    await expect(page.get_by_role("table", name="Cost and GPU hours per UTC day and state")).to_be_visible()
    await expect(page.get_by_role("table", name="Totals per instance state")).to_contain_text("loading")
    await ui.shot("usage")

    await page.set_viewport_size({"width": 390, "height": 844})  # a phone
    await page.goto("/#/admin/pool")
    await expect(page.locator(".conn")).to_have_text("Live")
    await expect(page.get_by_role("navigation", name="Main")).to_be_hidden()
    assert await page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), "the page scrolls sideways"
    await ui.shot("pool-phone")
    await page.get_by_role("button", name="Menu").click()
    await expect(page.get_by_role("navigation", name="Main")).to_be_visible()
    await ui.shot("menu-phone")
