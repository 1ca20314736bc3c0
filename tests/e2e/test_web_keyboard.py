"""Keyboard alone: sign in with the admin key, move through the main navigation, use the safe-mode dialog."""

from __future__ import annotations

from typing import Any

import pytest

from services.gateway.testing import ADMIN_KEY
from tests.e2e.harness import PLAYWRIGHT_MISSING, Session, Stack

expect = pytest.importorskip("playwright.async_api", reason=PLAYWRIGHT_MISSING, exc_type=ImportError).expect

pytestmark = pytest.mark.timeout(60)
FOCUSED = """() => {
  const el = document.activeElement;
  if (!el || el === document.body) return "";
  const label = el.labels && el.labels.length ? el.labels[0].textContent : "";
  return (el.getAttribute("aria-label") || label || el.textContent || "").trim();
}"""


async def tab_to(page: Any, name: str, *, back: bool = False, limit: int = 40) -> None:
    """Press Tab (or Shift+Tab) until the focused element is named ``name``."""
    seen = []
    for _ in range(limit):
        await page.keyboard.press("Shift+Tab" if back else "Tab")
        focused = await page.evaluate(FOCUSED)
        if focused == name:
            return
        seen.append(focused)
    raise AssertionError(f"{name!r} not reached by keyboard; focus went through {seen}")


async def test_nav_and_safe_mode_dialog_by_keyboard(stack: Stack, ui: Session) -> None:
    page = ui.page
    await page.goto("/")
    await expect(page.get_by_label("Username")).to_be_focused()
    await tab_to(page, "Admin key")
    await page.keyboard.type(ADMIN_KEY)
    await page.keyboard.press("Enter")
    await expect(page.get_by_role("heading", level=1, name="Pool")).to_be_focused()

    await page.keyboard.press("Shift+Tab")  # from the page heading back to the top of the page
    await tab_to(page, "Skip to content", back=True)
    await expect(page.get_by_role("link", name="Skip to content")).to_be_visible()
    await ui.shot("skip-link")
    await page.keyboard.press("Enter")
    await expect(page.get_by_role("heading", level=1, name="Pool")).to_be_focused()

    for name in ("Audit", "Usage", "Incident review", "Pool"):
        await tab_to(page, name, back=True)
        await page.keyboard.press("Enter")
        await expect(page.get_by_role("heading", level=1, name=name)).to_be_focused()
        link = page.get_by_role("navigation", name="Main").get_by_role("link", name=name)
        await expect(link).to_have_attribute("aria-current", "page")
        await ui.shot(f"keyboard-{name.lower().replace(' ', '-')}")

    await expect(page.locator(".conn")).to_have_text("Live")
    await tab_to(page, "Enter safe mode…")
    await page.keyboard.press("Enter")
    dialog = page.get_by_role("dialog", name="Enter safe mode?")
    await expect(dialog).to_be_visible()
    await expect(dialog.get_by_label("Reason (kept in the event)")).to_be_focused()
    await page.keyboard.press("Escape")  # cancel: nothing changes, focus returns to the button
    await expect(dialog).to_have_count(0)
    await expect(page.get_by_role("button", name="Enter safe mode…")).to_be_focused()
    assert (await stack.admin("GET", "/api/v1/pool"))["safe_mode"] is False

    await page.keyboard.press("Enter")
    await expect(dialog).to_be_visible()
    await page.keyboard.press("Control+A")
    await page.keyboard.type("keyboard drill")
    await ui.shot("safe-mode-dialog")
    await tab_to(page, "Enter safe mode", limit=3)  # past Cancel to the confirmation
    await page.keyboard.press("Enter")
    await expect(page.get_by_role("status").filter(has_text="Safe mode is on")).to_have_count(2)  # banner and notice
    pool = await stack.admin("GET", "/api/v1/pool")
    assert pool["safe_mode"] is True and pool["safe_mode_reason"] == "keyboard drill"
    await expect(page.get_by_role("button", name="Leave safe mode…")).to_be_focused()
    await expect(page.locator("#safe-mode-banner")).to_contain_text("keyboard drill")  # the reason, as the pool recorded it
    await ui.shot("safe-mode-on")

    await page.keyboard.press("Enter")  # and back out, confirming with Enter in the reason field
    leave = page.get_by_role("dialog", name="Leave safe mode?")
    await expect(leave).to_be_visible()
    await page.keyboard.press("Enter")
    await expect(page.get_by_role("button", name="Enter safe mode…")).to_be_visible()
    assert (await stack.admin("GET", "/api/v1/pool"))["safe_mode"] is False
