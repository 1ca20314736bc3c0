"""Pool settings edit the template's models and the required models, then offer to replace the instances rented
with the old list; the studio offers the new checkpoint."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest

from services.generation.testing import MODELS
from tests.e2e.harness import PLAYWRIGHT_MISSING, Session, Stack, sign_in_with_admin_key

expect = pytest.importorskip("playwright.async_api", reason=PLAYWRIGHT_MISSING, exc_type=ImportError).expect

pytestmark = pytest.mark.timeout(90)
EXTRA = "extra-model.safetensors"
EXTRA_URL = f"https://huggingface.co/example/models/resolve/main/{EXTRA}"


async def ready_instances(stack: Stack) -> list[dict[str, Any]]:
    return [i for i in (await stack.admin("GET", "/api/v1/pool"))["instances"] if i["state"] == "ready"]


async def until(predicate: Any, timeout: float = 30.0) -> Any:
    async with asyncio.timeout(timeout):
        while not (value := await predicate()):
            await asyncio.sleep(0.2)
        return value


async def test_pool_settings_edit_models_and_replace_instances(stack: Stack, ui: Session) -> None:
    await stack.admin("POST", "/api/v1/pool/prewarm", {"count": 1, "idempotency_key": uuid.uuid4().hex}, expect=202)
    old = {i["id"] for i in await until(lambda: ready_instances(stack))}
    page = ui.page
    try:
        await sign_in_with_admin_key(ui)
        models = page.get_by_label("Models to download (URLs)")
        await expect(models).to_have_value("\n".join(MODELS))
        await expect(page.get_by_label("Required models (file names)")).to_have_value("\n".join(MODELS))
        await models.fill("\n".join([*MODELS, EXTRA_URL]))
        await page.get_by_role("button", name="Save settings").click()
        await expect(page.get_by_role("status").filter(has_text="Pool settings saved")).to_be_visible()
        config = (await stack.admin("GET", "/api/v1/pool"))["config"]
        assert config["template"]["models"] == [*MODELS, EXTRA_URL]
        assert config["readiness"]["required_models"] == list(MODELS)
        offer = page.get_by_role("region", name="Replace instances")
        await expect(offer).to_contain_text("Running instances still have the old models")
        await ui.shot("replace-offer")

        await offer.get_by_role("button", name="Replace").click()
        await expect(page.get_by_role("status").filter(has_text="Replacing")).to_be_visible()
        await expect(offer).to_be_hidden()

        async def old_ones_gone() -> bool:
            instances = (await stack.admin("GET", "/api/v1/pool"))["instances"]
            return not any(i["id"] in old and i["state"] in ("ready", "claimed") for i in instances)
        await until(old_ones_gone)
        await stack.admin("POST", "/api/v1/pool/prewarm", {"count": 1, "idempotency_key": uuid.uuid4().hex},
                          expect=202)

        async def new_one_with_the_model() -> list[dict[str, Any]]:
            return [i for i in await ready_instances(stack) if i["id"] not in old and EXTRA in i["models"]]
        assert await until(new_one_with_the_model)
        await ui.shot("replaced")

        await page.get_by_role("navigation", name="Main").get_by_role("link", name="Studio").click()
        checkpoint = page.get_by_label("Checkpoint")
        await expect(checkpoint.locator(f"option[value='{EXTRA}']")).to_have_count(1)
        await ui.shot("studio-offers-it")
    finally:
        await stack.admin("PUT", "/api/v1/pool/config", {"template": {"models": list(MODELS)}}, expect=200)
