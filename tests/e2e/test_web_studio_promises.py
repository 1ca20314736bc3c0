"""The studio keeps its promises: how a past image was made (and making it again), real timeline durations, workflow
files that are not JSON, a kept form, Ctrl+Enter, cancelling queued rows, waiting that says safe mode, the burst
notice, one error with its details behind a disclosure, a phone's width, and page loads without console errors."""

from __future__ import annotations

import asyncio
import json
import re
import time
from datetime import datetime
from typing import Any

import pytest

from tests.e2e.harness import (
    PLAYWRIGHT_MISSING,
    Session,
    Stack,
    as_user,
    sign_in,
    sign_in_with_admin_key,
    user_token,
)

expect = pytest.importorskip("playwright.async_api", reason=PLAYWRIGHT_MISSING, exc_type=ImportError).expect

pytestmark = pytest.mark.timeout(110)
DONE_MS = 30_000
PHONE = {"width": 390, "height": 844}
UNKNOWN_NODE = {"1": {"class_type": "NoSuchNodeAnywhere", "inputs": {}},
                "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "mine"}}}
BROKEN = {"1": {"class_type": "KSampler", "inputs": {"model": ["9", 0], "seed": 1}},
          "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "mine"}}}


def console_errors(s: Session) -> list[str]:
    """Every console error from now on (stricter than the fixture: a refused fetch counts too)."""
    seen: list[str] = []
    s.page.on("console", lambda msg: seen.append(msg.text) if msg.type == "error" else None)
    return seen


async def wait_done(stack: Stack, token: dict[str, str], job_id: str) -> dict[str, Any]:
    for _ in range(150):
        job = await as_user(stack, token, "GET", f"/api/v1/generations/{job_id}")
        if job["status"] not in ("queued", "running"):
            return job
        await asyncio.sleep(0.2)
    raise AssertionError(f"{job_id} did not finish")


def seconds_between(a: str, b: str) -> float:
    return (datetime.fromisoformat(b) - datetime.fromisoformat(a)).total_seconds()


async def test_a_past_image_shows_how_it_was_made_and_can_be_made_again(stack: Stack, ui: Session) -> None:
    username, password = await stack.new_user("past")
    token = await user_token(stack, username, password)
    created = await as_user(stack, token, "POST", "/api/v1/generations", {
        "template": "txt2img", "prompt": "a red fox in fresh snow", "negative_prompt": "blurry, text",
        "seed": 4242, "steps": 12, "width": 512, "height": 384, "preset": "low"})
    job = await wait_done(stack, token, created["id"])
    assert job["status"] == "completed", job
    assert [m["kind"] for m in job["timeline"]] == ["queued", "claimed", "started", "completed"]
    took = seconds_between(job["created_at"], job["finished_at"])
    await asyncio.sleep(2.5)  # the page is opened well after the job ended: the timeline must not count from now

    page = ui.page
    errors = console_errors(ui)
    await sign_in(ui, username, password, "/#/studio")
    history = page.get_by_role("table", name="Recent generations")
    await history.get_by_role("button", name=f"Show generation {job['id']}").click()
    happened = page.get_by_role("list", name="What happened")
    completed = happened.get_by_role("listitem").filter(has_text="Completed")
    await expect(completed).to_be_visible()
    shown = float(re.match(r"\+(\d+\.\d) s", await completed.inner_text()).group(1))
    assert abs(shown - took) <= 0.11, (shown, took)  # the job's own duration, not the time since the page loaded
    await expect(happened).to_contain_text("Got a GPU")
    facts = page.locator(".job-card .settings")
    for text in ("a red fox in fresh snow", "blurry, text", "txt2img", "low preset", "sd15.safetensors", "4242",
                 "512×384", "12", "LoRAs"):
        await expect(facts).to_contain_text(text)
    await ui.shot("show-old-job")

    await page.get_by_role("navigation", name="Main").get_by_role("link", name="Gallery").click()
    grid = page.get_by_role("list", name="Outputs")
    card = grid.locator(":scope > li").first
    await expect(card).to_contain_text("a red fox in fresh snow")
    await card.locator("details.made > summary").click()
    made = card.locator("details.made .settings")
    for text in ("blurry, text", "txt2img", "sd15.safetensors", "4242", "512×384", "Steps"):
        await expect(made).to_contain_text(text)
    await ui.shot("gallery-card-settings")
    await card.get_by_role("button", name=re.compile("^Open ")).click()
    dialog = page.locator("dialog.lightbox")
    await expect(dialog.locator(".settings")).to_contain_text("a red fox in fresh snow")
    await expect(dialog.locator(".settings")).to_contain_text("Negative prompt")
    await expect(dialog.locator(".settings")).to_contain_text("4242")
    await ui.shot("lightbox-settings")
    await dialog.get_by_role("button", name=re.compile(r"^Variation \(new seed\) of ")).click()
    await expect(page.get_by_role("heading", level=1, name="Studio")).to_be_visible()
    await expect(page.get_by_label("Prompt", exact=True)).to_have_value("a red fox in fresh snow")
    await expect(page.get_by_label("Negative prompt")).to_have_value("blurry, text")
    await expect(page.get_by_label("Steps", exact=True)).to_have_value("12")
    await expect(page.get_by_label("Height (px)")).to_have_value("384")
    seed = await page.get_by_label("Seed", exact=True).input_value()
    assert seed.isdigit() and seed != "4242"
    await ui.shot("variation-in-studio")

    await page.get_by_role("navigation", name="Main").get_by_role("link", name="Gallery").click()
    await grid.get_by_role("button", name=re.compile("^Reuse these settings of")).first.click()
    await expect(page.get_by_label("Seed", exact=True)).to_have_value("4242")
    await ui.shot("reuse-in-studio")
    assert errors == [], errors


async def test_a_workflow_file_that_is_not_json_says_so_and_an_unknown_node_is_named(stack: Stack, ui: Session) -> None:
    username, password = await stack.new_user("wf")
    page = ui.page
    await sign_in(ui, username, password, "/#/studio")
    await page.get_by_label("Template").select_option("workflow")
    upload = page.get_by_label("Workflow file (ComfyUI API format, .json)")
    await upload.set_input_files({"name": "notes.json", "mimeType": "application/json", "buffer": b'{"1": {"class_type": '})
    said = page.locator("#workflow-file-error")
    await expect(said).to_contain_text("notes.json is not valid JSON")
    await page.wait_for_timeout(1500)  # past the estimate's debounce, which used to clear it
    await expect(said).to_be_visible()
    await expect(page.locator("#estimate")).to_contain_text("not valid JSON")
    await ui.shot("not-json")
    await page.get_by_role("button", name="Generate").click()  # says why instead of doing nothing
    await expect(said).to_be_visible()
    await expect(page.locator("#estimate")).to_contain_text("notes.json is not valid JSON")
    token = await user_token(stack, username, password)
    assert (await as_user(stack, token, "GET", "/api/v1/generations"))["items"] == []
    await ui.shot("not-json-generate")

    await upload.set_input_files({"name": "odd.json", "mimeType": "application/json",
                                  "buffer": json.dumps(UNKNOWN_NODE).encode()})
    await expect(said).to_have_count(0)
    await expect(page.locator("#estimate")).to_contain_text("Estimated cost")
    await page.get_by_role("button", name="Generate").click()
    error = page.locator("#job-error")
    await expect(error).to_contain_text("NoSuchNodeAnywhere", timeout=DONE_MS)
    card_text = await page.locator(".job-card").inner_text()
    message = await error.inner_text()
    assert card_text.count(message.strip()[:40]) == 1, card_text  # ComfyUI's words once, not three times
    await ui.shot("unknown-node")


async def test_the_form_is_kept_ctrl_enter_generates_and_img2img_does_not_estimate_in_vain(stack: Stack, ui: Session) -> None:
    username, password = await stack.new_user("keep")
    page = ui.page
    refused: list[str] = []
    page.on("response", lambda r: refused.append(f"{r.status} {r.url}")
            if "/api/v1/generations/estimate" in r.url and r.status >= 400 else None)
    polled: list[str] = []  # the pool notes follow the stream; reads would eat the per-credential rate limit
    page.on("request", lambda r: polled.append(r.url) if r.url.endswith("/api/v1/pool") else None)
    await sign_in(ui, username, password, "/#/studio")
    await page.get_by_label("Prompt", exact=True).fill("a paper boat on a puddle")
    await page.get_by_label("Steps", exact=True).fill("9")
    await page.get_by_label("Quality preset").select_option("low")
    nav = page.get_by_role("navigation", name="Main")
    await nav.get_by_role("link", name="Gallery").click()
    await expect(page.get_by_role("heading", level=1, name="Gallery")).to_be_visible()
    await nav.get_by_role("link", name="Studio").click()
    await expect(page.get_by_label("Prompt", exact=True)).to_have_value("a paper boat on a puddle")
    await expect(page.get_by_label("Steps", exact=True)).to_have_value("9")
    await expect(page.get_by_label("Quality preset")).to_have_value("low")
    await ui.shot("form-kept")

    await page.get_by_label("Template").select_option("img2img")
    await expect(page.locator("#estimate")).to_contain_text("Choose an input image")
    await page.wait_for_timeout(1000)
    assert refused == [], refused
    await ui.shot("img2img-no-estimate")
    await page.get_by_label("Template").select_option("txt2img")
    await expect(page.locator("#estimate")).to_contain_text("Estimated cost")

    await page.get_by_label("Prompt", exact=True).press("Control+Enter")
    await expect(page.locator("#job-phase")).to_contain_text("Done", timeout=DONE_MS)
    token = await user_token(stack, username, password)
    [job] = (await as_user(stack, token, "GET", "/api/v1/generations"))["items"]
    assert job["params"]["prompt"] == "a paper boat on a puddle" and job["params"]["steps"] == 9
    notes = page.locator("#pool-notes")  # the pool grew past its minimum (0 here) for this job
    await expect(notes).to_contain_text("above its minimum of 0", timeout=10_000)
    idle = (await stack.admin("GET", "/api/v1/pool"))["config"]["idle_timeout_s"]  # 900 unless a test changed it
    await expect(notes).to_contain_text(f"stops after {round(idle / 60)} min without a job and bills until then")
    await ui.shot("ctrl-enter-done-burst-note")
    assert refused == [], refused
    assert polled == [], polled


async def test_waiting_in_safe_mode_says_so_and_a_queued_row_can_be_cancelled(stack: Stack, ui: Session) -> None:
    username, password = await stack.new_user("safe")
    page = ui.page
    await stack.admin("POST", "/api/v1/pool/safe-mode", {"enabled": True, "reason": "admin"}, expect=200)
    try:
        for _ in range(100):  # safe mode terminates every instance; the job must not catch one on its way out
            pool = await stack.admin("GET", "/api/v1/pool")
            if all(i["state"] in ("terminated", "failed") for i in pool["instances"]):
                break
            await asyncio.sleep(0.2)
        await sign_in(ui, username, password, "/#/studio")
        await expect(page.locator("#pool-notes")).to_contain_text("Safe mode is on")
        await page.get_by_label("Prompt", exact=True).fill("a kite over the dunes")
        await expect(page.locator("#estimate")).to_contain_text("Estimated cost")
        await page.get_by_role("button", name="Generate").click()
        phase = page.locator("#job-phase")
        await expect(phase).to_contain_text("safe mode is on", timeout=10_000)
        await expect(phase).not_to_contain_text("Requesting a GPU")
        await expect(phase).not_to_contain_text("about")
        await ui.shot("waiting-safe-mode")
        token = await user_token(stack, username, password)
        [queued] = (await as_user(stack, token, "GET", "/api/v1/generations"))["items"]
        waiting = (await as_user(stack, token, "GET", f"/api/v1/generations/{queued['id']}"))["waiting"]
        assert waiting["reason"] == "safe_mode" and waiting["expected_wait_s"] is None, waiting
        history = page.get_by_role("table", name="Recent generations")
        cancel = history.get_by_role("button", name=re.compile("^Cancel generation "))
        await expect(cancel).to_have_count(1)
        await cancel.click()
        await expect(history).to_contain_text("cancelled")
        await expect(cancel).to_have_count(0)
        await expect(phase).to_contain_text("Cancelled")
        await ui.shot("queued-row-cancelled")
    finally:
        await stack.admin("POST", "/api/v1/pool/safe-mode", {"enabled": False, "reason": "test over"}, expect=200)


async def test_one_error_with_details_behind_a_disclosure_and_a_new_one_replaces_it(stack: Stack, ui: Session) -> None:
    username, password = await stack.new_user("err")
    page = ui.page
    await sign_in(ui, username, password, "/#/studio")
    await page.get_by_label("Template").select_option("workflow")
    await page.get_by_label("Workflow file (ComfyUI API format, .json)").set_input_files(
        {"name": "broken.json", "mimeType": "application/json", "buffer": json.dumps(BROKEN).encode()})
    await page.get_by_role("button", name="Generate").click()
    alert = page.get_by_role("alert").filter(has_text="invalid workflow")
    await expect(alert).to_be_visible()
    details = alert.locator("details")
    await expect(details.get_by_text("VALIDATION_FAILED")).to_be_hidden()  # behind the disclosure
    await details.locator("summary").click()
    await expect(details).to_contain_text("VALIDATION_FAILED")
    await expect(details).to_contain_text("HTTP 422")
    await expect(details).to_contain_text("correlation id")
    await expect(alert).not_to_contain_text("Linked node does not exist")  # listed once, under the form
    await expect(page.get_by_role("group", name="Problems in your workflow")).to_contain_text("Linked node does not exist")
    await ui.shot("error-details")
    await page.get_by_role("button", name="Generate").click()  # the same refusal again: still one message
    await expect(page.locator("#alerts .alert-error")).to_have_count(1)

    await page.get_by_role("navigation", name="Main").get_by_role("link", name="Gallery").click()
    await page.get_by_label("From (UTC day)").fill("2030-01-02")
    await page.get_by_label("To (UTC day)").fill("2030-01-01")
    await page.get_by_role("button", name="Apply filters").click()
    await expect(page.get_by_role("alert")).to_contain_text("since is after until")
    await page.get_by_label("From (UTC day)").fill("2030-01-03")
    await page.get_by_role("button", name="Apply filters").click()
    await expect(page.locator("#alerts .alert-error")).to_have_count(1)
    await ui.shot("one-error")


async def test_phone_width_keeps_price_cost_and_actions_reachable(stack: Stack, ui: Session) -> None:
    username, password = await stack.new_user("phone")
    token = await user_token(stack, username, password)
    created = await as_user(stack, token, "POST", "/api/v1/generations", {"template": "txt2img", "prompt": "a small cat"})
    await wait_done(stack, token, created["id"])
    page = ui.page
    await page.set_viewport_size(PHONE)
    await sign_in(ui, username, password, "/#/studio")
    menu = page.get_by_role("button", name="Menu")
    await expect(menu).to_be_visible()
    styled = await menu.evaluate("b => { const s = getComputedStyle(b); return [s.borderTopLeftRadius, s.backgroundColor, "
                                 "s.borderTopStyle]; }")
    assert styled[0] != "0px" and styled[1] != "rgba(0, 0, 0, 0)" and styled[2] == "solid", styled
    await expect(page.locator("#pool-notes")).to_contain_text("above its minimum")  # the burst note, on a phone too
    row = page.locator(f'table.history tr[data-id="{created["id"]}"]')
    for label in ("Cost", "Actions"):
        cell = row.locator(f'td[data-label="{label}"]')
        await expect(cell).to_be_visible()
        box = await cell.bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"], (label, box)
    show = row.get_by_role("button", name=f"Show generation {created['id']}")
    await show.scroll_into_view_if_needed()
    box = await show.bounding_box()
    assert box is not None and box["x"] + box["width"] <= PHONE["width"]
    assert await page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), "the studio scrolls sideways"
    await ui.shot("studio-phone")
    await menu.click()
    await expect(page.get_by_role("navigation", name="Main")).to_be_visible()
    await ui.shot("menu-open-phone")

    operator = await ui.context.browser.new_context(base_url=stack.url, viewport=PHONE)  # the pool page on a phone
    admin = await operator.new_page()
    admin_session = Session(page=admin, context=operator, name=f"{ui.name}_pool", problems=ui.problems)
    try:
        await pool_on_a_phone(admin_session)
    finally:
        await operator.close()


async def pool_on_a_phone(admin_session: Session) -> None:
    admin = admin_session.page
    await sign_in_with_admin_key(admin_session)
    live = admin.locator("table.instances tbody tr").first
    await expect(live).to_be_visible(timeout=20_000)
    for label in ("$/h", "Accrued", "Actions"):
        cell = live.locator(f'td[data-label="{label}"]')
        await expect(cell).to_be_visible()
        box = await cell.bounding_box()
        assert box is not None and box["x"] + box["width"] <= PHONE["width"], (label, box)
    terminate = live.get_by_role("button", name=re.compile("^Terminate "))
    await terminate.scroll_into_view_if_needed()
    await expect(terminate).to_be_in_viewport()
    assert await admin.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), "the pool page scrolls sideways"
    await admin_session.shot("pool-phone")


async def test_page_loads_log_no_console_errors(stack: Stack, ui: Session) -> None:
    page = ui.page
    errors = console_errors(ui)
    started = time.monotonic()
    await page.goto("/")  # a signed-out visitor
    await page.get_by_role("button", name="Sign in", exact=True).wait_for()
    await page.wait_for_load_state("networkidle")
    await ui.shot("signed-out")
    await page.goto("/api/docs")
    await page.wait_for_load_state("networkidle")
    await ui.shot("api-docs")
    username, password = await stack.new_user("quiet")
    await sign_in(ui, username, password, "/#/studio")
    await expect(page.locator(".conn")).to_have_text("Live")
    for path in ("/#/gallery", "/#/muses", "/#/tokens", "/#/studio"):
        await page.goto(path)
        await page.wait_for_load_state("networkidle")
    await ui.shot("signed-in-pages")
    assert errors == [], errors

    operator = await ui.context.browser.new_context(base_url=stack.url, viewport={"width": 1280, "height": 900})
    try:
        admin = Session(page=await operator.new_page(), context=operator, name=f"{ui.name}_admin", problems=ui.problems)
        admin_errors = console_errors(admin)
        await sign_in_with_admin_key(admin)
        for path in ("/#/admin/usage", "/#/admin/audit", "/#/admin/incidents", "/#/admin/accounts", "/#/admin/pool"):
            await admin.page.goto(path)
            await admin.page.wait_for_load_state("networkidle")
        await admin.shot("admin-pages")
        assert admin_errors == [], admin_errors
    finally:
        await operator.close()
    assert time.monotonic() - started < 80
