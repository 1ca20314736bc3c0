"""A new user generates in the studio and watches it live, finds the image in the gallery, downloads it (a PNG),
tags, filters and deletes it; a workflow of their own is checked, its node errors shown, then run."""

from __future__ import annotations

import io
import json
import re

import pytest
from PIL import Image

from tests.e2e.harness import (
    PLAYWRIGHT_MISSING,
    Session,
    Stack,
    as_user,
    sign_in,
    user_token,
)

expect = pytest.importorskip("playwright.async_api", reason=PLAYWRIGHT_MISSING, exc_type=ImportError).expect

pytestmark = pytest.mark.timeout(90)
DONE_MS = 30_000  # from Generate to the result, renting a GPU on the simulator included
RECORD_SHOWN = """() => {
  window.__shown = [];
  for (const id of ["job-phase", "job-step"]) {
    const el = document.getElementById(id);
    new MutationObserver(() => window.__shown.push(el.textContent)).observe(el, { childList: true, characterData: true, subtree: true });
  }
}"""
BROKEN = {"1": {"class_type": "KSampler", "inputs": {"model": ["9", 0], "seed": 1}},
          "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "mine"}}}
SMALL = {"1": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 48, "batch_size": 1, "color": 0x3366FF}},
         "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "mine"}}}


def workflow_file(name: str, workflow: dict[str, object]) -> dict[str, object]:
    return {"name": name, "mimeType": "application/json", "buffer": json.dumps(workflow).encode()}


async def test_generate_watch_progress_then_gallery_and_download(stack: Stack, ui: Session) -> None:
    username, password = await stack.new_user("artist")
    page = ui.page
    await sign_in(ui, username, password)
    nav = page.get_by_role("navigation", name="Main")
    await nav.get_by_role("link", name="Studio").click()
    await expect(page.get_by_role("heading", level=1, name="Studio")).to_be_visible()
    await expect(page.locator(".conn")).to_have_text("Live")
    await expect(page.get_by_text("No generations yet")).to_be_visible()
    estimate = page.locator("#estimate")
    await expect(estimate).to_contain_text("Write a prompt")

    await page.get_by_label("Prompt", exact=True).fill("a lighthouse on a cliff at dusk")
    await page.get_by_label("Quality preset").select_option("low")
    await page.get_by_label("Steps", exact=True).fill("24")
    await page.get_by_role("button", name="Random seed").click()
    seed = await page.get_by_label("Seed", exact=True).input_value()
    assert seed.isdigit()
    await expect(estimate).to_contain_text(re.compile(r"Estimated cost ≈ \$0\.\d+"))
    await page.get_by_label("Steps", exact=True).fill("999")  # out of range: the estimate says why, before anything runs
    await expect(estimate).to_contain_text("must be between 1 and 150")
    await page.get_by_label("Steps", exact=True).fill("24")
    await expect(estimate).to_contain_text("Estimated cost")
    await ui.shot("studio")

    await page.evaluate(RECORD_SHOWN)
    await page.get_by_label("Seed", exact=True).press("Enter")  # the keyboard submits the form
    phase = page.locator("#job-phase")
    await expect(phase).to_contain_text("Done", timeout=DONE_MS)
    shown = await page.evaluate("window.__shown")
    assert any(re.fullmatch(r"Step \d+ of 24", text) for text in shown), shown  # live progress from the stream
    happened = page.get_by_role("list", name="What happened")
    await expect(happened).to_contain_text("Queued")
    await expect(happened).to_contain_text("Sampling")
    await expect(happened).to_contain_text("Completed")
    result = page.get_by_role("img", name=re.compile(r"^Result 1 of 1: a lighthouse"))
    await expect(result).to_be_visible()
    assert await result.evaluate("img => img.complete && img.naturalWidth === 512")
    await expect(page.locator(".facts")).to_contain_text(seed)
    history = page.get_by_role("table", name="Recent generations")
    await expect(history.get_by_role("row")).to_have_count(2)  # header and the generation
    await expect(history).to_contain_text("completed")
    await ui.shot("studio-done")

    token = await user_token(stack, username, password)
    [job] = (await as_user(stack, token, "GET", "/api/v1/generations"))["items"]
    assert job["status"] == "completed" and job["params"]["seed"] == int(seed) and job["params"]["steps"] == 24
    [output] = job["outputs"]

    await nav.get_by_role("link", name="Gallery").click()
    await expect(page.get_by_role("heading", level=1, name="Gallery")).to_be_visible()
    grid = page.get_by_role("list", name="Outputs")
    await expect(grid.locator(":scope > li")).to_have_count(1)
    await ui.shot("gallery")
    open_button = grid.get_by_role("button", name=f"Open {output['filename']} full size")
    await open_button.click()
    dialog = page.get_by_role("dialog", name=output["filename"])
    await expect(dialog).to_be_visible()
    await expect(dialog.get_by_role("img")).to_be_visible()
    await expect(dialog.get_by_role("button", name="Close")).to_be_focused()
    await ui.shot("lightbox")
    async with page.expect_download() as download_info:
        await dialog.get_by_role("link", name=f"Download {output['filename']}").click()
    download = await download_info.value
    assert download.suggested_filename == output["filename"]
    data = (await download.path()).read_bytes()
    with Image.open(io.BytesIO(data)) as image:
        assert image.format == "PNG" and image.size == (512, 512)
        image.load()  # decodes every pixel
    await page.keyboard.press("Escape")
    await expect(dialog).to_have_count(0)
    await expect(open_button).to_be_focused()  # back where the user was

    await grid.get_by_role("button", name=f"Edit the tags of {output['filename']}").click()
    tags = page.get_by_role("dialog", name=f"Tags of {output['filename']}")
    await tags.get_by_label("Tags").fill("Lighthouse, dusk")
    await tags.get_by_role("button", name="Save tags").click()
    await expect(grid.get_by_role("list", name="Tags")).to_have_text(re.compile("dusk.*lighthouse|lighthouse.*dusk"))
    await page.get_by_label("Tag", exact=True).fill("nothing-like-this")
    await page.get_by_role("button", name="Apply filters").click()
    await expect(page.get_by_text("No outputs match these filters.")).to_be_visible()
    assert "tag=nothing-like-this" in page.url
    await page.get_by_label("Tag", exact=True).fill("lighthouse")
    await page.get_by_role("button", name="Apply filters").click()
    await expect(grid.locator(":scope > li")).to_have_count(1)
    await ui.shot("gallery-tagged")
    await page.set_viewport_size({"width": 390, "height": 844})  # a phone: one column, nothing scrolls sideways
    await expect(grid.get_by_role("img")).to_be_visible()
    assert await page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), "the gallery scrolls sideways"
    await ui.shot("gallery-phone")
    await page.set_viewport_size({"width": 1280, "height": 900})

    await grid.get_by_role("button", name=f"Delete {output['filename']}").click()
    confirm = page.get_by_role("dialog", name="Delete this output?")
    await expect(confirm).to_contain_text("cannot be undone")
    await confirm.get_by_role("button", name="Delete").click()
    await expect(page.get_by_role("status").filter(has_text="deleted")).to_be_visible()
    await page.get_by_role("button", name="Clear").click()
    await expect(page.get_by_text("Nothing here yet.")).to_be_visible()
    assert (await as_user(stack, token, "GET", "/api/v1/gallery"))["items"] == []
    await ui.shot("gallery-empty")


async def test_your_own_workflow_is_checked_then_runs(stack: Stack, ui: Session) -> None:
    username, password = await stack.new_user("byo")
    page = ui.page
    await sign_in(ui, username, password, "/#/studio")
    await expect(page.get_by_role("heading", level=1, name="Studio")).to_be_visible()
    await page.get_by_label("Template").select_option("workflow")
    await expect(page.get_by_label("Prompt", exact=True)).to_be_hidden()
    upload = page.get_by_label("Workflow file (ComfyUI API format, .json)")
    await upload.set_input_files(workflow_file("broken.json", BROKEN))
    problems = page.get_by_role("group", name="Problems in your workflow")
    await expect(problems).to_contain_text("Node 1 KSampler")
    await expect(problems).to_contain_text("Linked node does not exist: model: links to node '9'")
    await ui.shot("workflow-problems")
    await page.get_by_role("button", name="Generate").click()  # refused with the same node errors, nothing queued
    await expect(page.get_by_role("alert")).to_contain_text("invalid workflow")
    await expect(problems).to_be_visible()

    await upload.set_input_files(workflow_file("small.json", SMALL))
    await expect(page.get_by_text("small.json: 2 node(s) (EmptyImage, SaveImage).")).to_be_visible()
    await expect(problems).to_have_count(0)
    await expect(page.locator("#estimate")).to_contain_text("Estimated cost")
    await page.get_by_role("button", name="Generate").click()
    await expect(page.locator("#job-phase")).to_contain_text("Done", timeout=DONE_MS)
    result = page.get_by_role("img", name=re.compile(r"^Result 1 of 1"))
    assert await result.evaluate("img => img.complete && img.naturalWidth === 64")
    await ui.shot("workflow-done")
    token = await user_token(stack, username, password)
    [job] = (await as_user(stack, token, "GET", "/api/v1/generations"))["items"]
    assert job["status"] == "completed" and job["template"] is None
