"""A user creates a muse (attributes, prompt template, a reference image from their outputs, a variation),
generates with it in the studio, sees it in the muse's history, exports it and imports the file back."""

from __future__ import annotations

import json
import re

import pytest

from services.gateway.testing import eventually
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
TEMPLATE = "portrait of {name}, {prompt}, {face}, {hair}, cinematic lighting"


async def test_create_a_muse_generate_with_it_export_and_import(stack: Stack, ui: Session) -> None:
    username, password = await stack.new_user("muser")
    token = await user_token(stack, username, password)
    # An earlier output of theirs, to pick as the muse's reference image.
    first = await as_user(stack, token, "POST", "/api/v1/generations",
                          {"template": "txt2img", "prompt": "a sketch of a face", "preset": "low", "steps": 4})

    async def finished() -> bool:
        job = await as_user(stack, token, "GET", f"/api/v1/generations/{first['id']}")
        assert job["status"] not in ("failed", "cancelled"), job
        return job["status"] == "completed"

    await eventually(finished, timeout=30)

    page = ui.page
    await sign_in(ui, username, password)
    nav = page.get_by_role("navigation", name="Main")
    await nav.get_by_role("link", name="Muses").click()
    await expect(page.get_by_role("heading", level=1, name="Muses")).to_be_visible()
    await expect(page.get_by_text("No muses yet.")).to_be_visible()
    await ui.shot("muses-empty")

    await page.get_by_role("link", name="New muse").click()
    await expect(page.get_by_role("heading", level=1, name="New muse")).to_be_visible()
    await expect(page.get_by_label("Name", exact=True)).to_be_focused()
    await page.get_by_label("Name", exact=True).fill("Ada")
    await page.get_by_label("Age", exact=True).fill("late 20s")
    await page.get_by_label("Eyes", exact=True).fill("green eyes")
    await page.get_by_label("Colour", exact=True).fill("auburn hair")
    await page.get_by_role("button", name="Add an attribute to style").click()
    await page.get_by_label("Style: attribute name", exact=True).fill("jacket")
    await page.get_by_label("Style: attribute value", exact=True).fill("brass-buttoned jacket")
    await page.get_by_label("Prompt template", exact=True).fill("portrait of {name}")  # no {prompt}: the browser refuses to save
    await page.get_by_role("button", name="Create muse").click()
    await expect(page.get_by_role("heading", level=1, name="New muse")).to_be_visible()
    assert "{prompt}" in await page.get_by_label("Prompt template", exact=True).evaluate("el => el.validationMessage")
    await page.get_by_label("Prompt template", exact=True).fill(TEMPLATE)
    await expect(page.get_by_text("Example: “a walk in the rain” becomes “portrait of Ada, a walk in the rain, green eyes, "
                                  "auburn hair, cinematic lighting”.")).to_be_visible()
    await page.get_by_label("Negative prompt", exact=True).fill("blurry")
    await page.get_by_label("Preferred checkpoint", exact=True).select_option("sd15.safetensors")

    await page.get_by_role("button", name="Add from your outputs…").click()
    picker = page.get_by_role("dialog", name="Add reference images")
    await picker.get_by_role("checkbox").first.check()
    await ui.shot("muse-picker")
    await picker.get_by_role("button", name="Add selected").click()
    refs = page.get_by_role("list", name="Reference images")
    await expect(refs.get_by_role("img", name="Reference image 1")).to_be_visible()

    await page.get_by_role("button", name="Add a variation").click()
    await page.get_by_label("Variation name", exact=True).fill("winter")
    await page.get_by_label("Added to the prompt", exact=True).fill("snowy street")
    await page.get_by_role("button", name="Override an attribute").click()
    await page.get_by_label("Group", exact=True).select_option("style")
    await page.get_by_label("variation winter: attribute name", exact=True).fill("jacket")
    await page.get_by_label("variation winter: attribute value", exact=True).fill("long wool coat")
    await ui.shot("muse-editor")
    await page.get_by_role("button", name="Create muse").click()
    await expect(page.get_by_role("heading", level=1, name="Muse: Ada")).to_be_visible()
    await expect(page.get_by_role("status").filter(has_text="Ada saved (version 1)")).to_be_visible()
    [muse] = (await as_user(stack, token, "GET", "/api/v1/muses"))["items"]
    spec = muse["muse"]
    assert spec["face"] == {"eyes": "green eyes"} and spec["style"] == {"jacket": "brass-buttoned jacket"}
    assert spec["prompt_template"] == TEMPLATE and spec["checkpoint"] == "sd15.safetensors"
    assert spec["reference_images"] and spec["reference_images"][0].startswith("gen/")
    assert spec["variations"] == [{"name": "winter", "attributes": {"style": {"jacket": "long wool coat"}},
                                   "prompt_suffix": "snowy street"}]
    await ui.shot("muse-saved")

    await page.get_by_role("link", name="Use in studio").click()
    await expect(page.get_by_role("heading", level=1, name="Studio")).to_be_visible()
    await expect(page.get_by_label("Muse", exact=True)).to_have_value(muse["id"])
    await page.get_by_label("Variation", exact=True).select_option("winter")
    await page.get_by_label("Prompt", exact=True).fill("reading in a library")
    await expect(page.locator("#muse-preview")).to_contain_text(
        "portrait of Ada, reading in a library, green eyes, auburn hair, cinematic lighting, snowy street")
    await page.get_by_label("Quality preset", exact=True).select_option("low")
    await page.get_by_role("button", name="Generate").click()
    await expect(page.locator("#job-phase")).to_contain_text("Done", timeout=30_000)
    await ui.shot("studio-with-muse")

    jobs = (await as_user(stack, token, "GET", "/api/v1/generations"))["items"]
    job = jobs[0]
    assert job["muse_id"] == muse["id"] and job["status"] == "completed"
    prompt = job["params"]["prompt"]
    assert prompt.startswith("portrait of Ada, reading in a library") and "cinematic lighting" in prompt, prompt
    assert "snowy street" in prompt and job["params"]["negative_prompt"] == "blurry"

    await nav.get_by_role("link", name="Muses").click()
    await page.get_by_role("list", name="Your muses").get_by_role("link", name="Ada", exact=True).click()
    history = page.get_by_role("table", name="Generations with Ada")
    await expect(history).to_contain_text("reading in a library")
    await expect(history.get_by_role("row")).to_have_count(2)  # the earlier sketch did not use the muse
    await ui.shot("muse-history")
    await page.get_by_role("link", name="See Ada's outputs in the gallery").click()
    await expect(page.get_by_role("heading", level=1, name="Gallery")).to_be_visible()
    await expect(page.get_by_label("Muse", exact=True)).to_have_value(muse["id"])
    outputs = page.get_by_role("list", name="Outputs").locator(":scope > li")
    await expect(outputs).to_have_count(1)  # the muse's output, not the earlier sketch
    await expect(outputs.get_by_role("link", name="Ada")).to_be_visible()
    await ui.shot("gallery-by-muse")
    await page.go_back()
    await expect(page.get_by_role("heading", level=1, name="Muse: Ada")).to_be_visible()

    async with page.expect_download() as download_info:
        await page.get_by_role("button", name="Export JSON").click()
    download = await download_info.value
    assert download.suggested_filename == "ada.muse.json"
    doc = json.loads((await download.path()).read_text())
    assert doc["format"] == "stoker.muse" and doc["muse"]["prompt_template"] == TEMPLATE

    doc["muse"]["name"] = "Ada (imported)"
    await nav.get_by_role("link", name="Muses").click()
    await page.locator('input[type="file"]').set_input_files(
        {"name": "ada.muse.json", "mimeType": "application/json", "buffer": json.dumps(doc).encode()})
    await expect(page.get_by_role("heading", level=1, name="Muse: Ada (imported)")).to_be_visible()
    await expect(page.get_by_label("Eyes", exact=True)).to_have_value("green eyes")
    await nav.get_by_role("link", name="Muses").click()
    cards = page.get_by_role("list", name="Your muses").locator(":scope > li")
    await expect(cards).to_have_count(2)
    await expect(cards.first.locator("img.avatar")).to_be_visible()  # the reference image as its picture
    await ui.shot("muses-list")
    assert re.search(r"/muses$", page.url)
