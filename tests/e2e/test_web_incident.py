"""Incident review of an instance that failed extraction: its timeline, the scrubber replaying the pool, export."""

from __future__ import annotations

import json

import pytest

from services.gateway.testing import eventually
from tests.e2e.harness import PLAYWRIGHT_MISSING, Session, Stack, sign_in_with_admin_key

expect = pytest.importorskip("playwright.async_api", reason=PLAYWRIGHT_MISSING, exc_type=ImportError).expect

pytestmark = pytest.mark.timeout(60)


async def test_review_an_extraction_failure(stack: Stack, ui: Session) -> None:
    await stack.sim_faults(extraction_failures=1)
    [iid] = (await stack.admin("POST", "/api/v1/pool/prewarm", {"count": 1}, expect=202))["instance_ids"]

    async def ended() -> bool:
        page = await stack.admin("GET", "/api/v1/events", params={"aggregate_type": "instance", "aggregate_id": iid},
                                 expect=200)
        types = [e["type"] for e in page["items"]]
        return "ExtractionFailed" in types and "Terminated" in types

    await eventually(ended, timeout=30)
    await stack.audit.wait_caught_up(20)

    page = ui.page
    await sign_in_with_admin_key(ui)
    await page.get_by_role("navigation", name="Main").get_by_role("link", name="Incident review").click()
    await expect(page.get_by_role("heading", level=1, name="Incident review")).to_be_visible()
    await ui.shot("incident-empty")
    await page.get_by_label("Instance").fill(iid)
    await page.get_by_role("button", name="Show timeline").click()

    timeline = page.get_by_role("list", name="Events, oldest first")
    failed = timeline.get_by_role("button").filter(has_text="ExtractionFailed")
    await expect(failed).to_contain_text("no space left on device")
    await expect(failed).to_have_attribute("aria-current", "step")  # the review opens at the failure
    await expect(failed).to_contain_text("actor pool")
    state = page.locator("#replayed-state")
    await expect(state).to_have_text("loading (extraction failed)")
    await ui.shot("incident-failure")

    scrubber = page.get_by_label("Position in the timeline")
    await scrubber.focus()
    await page.keyboard.press("Home")
    await expect(timeline.get_by_role("button").first).to_have_attribute("aria-current", "step")
    await expect(state).to_have_text("renting")
    await ui.shot("incident-first")
    await page.keyboard.press("End")
    await expect(state).to_have_text("terminated")
    await page.get_by_role("button", name="← Previous").click()
    await expect(state).not_to_have_text("terminated")
    await ui.shot("incident-scrubbed")

    async with page.expect_download() as download_info:
        await page.get_by_role("button", name="Export JSON").click()
    download = await download_info.value
    exported = json.loads((await download.path()).read_text())
    assert exported["query"]["instance"] == iid
    types = [e["type"] for e in exported["events"]]
    assert types[0] == "RentRequested" and "ExtractionFailed" in types and types[-1] == "Terminated"
    audited = {r["event_id"] for r in exported["audit"]["items"]}
    assert {e["id"] for e in exported["events"]} <= audited, "every event of the incident is in the audit log"
