"""The UI's "am I signed in?" read: a signed-out visitor gets an answer (200), not a 401 the browser logs as an error."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp import test_utils

from services.gateway.testing import ADMIN, PASSWORD, bearer, gateway_client, gateway_env

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
async def client(nats_url: str, database_url: str) -> AsyncIterator[test_utils.TestClient]:
    async with gateway_client(gateway_env(nats_url, database_url)) as client:
        yield client


async def test_session_status_answers_signed_out_visitors_and_names_signed_in_ones(
        client: test_utils.TestClient, unique_id: str) -> None:
    resp = await client.get("/api/v1/auth/session")
    assert resp.status == 200 and await resp.json() == {"authenticated": False}
    resp = await client.get("/api/v1/auth/session", headers=bearer("stk_" + "x" * 43))  # stale: signed out, no 401
    assert resp.status == 200 and (await resp.json())["authenticated"] is False
    name = f"sess-{unique_id}"
    assert (await client.post("/api/v1/auth/register", json={"username": name, "password": PASSWORD},
                              headers=ADMIN)).status == 201
    login = await (await client.post("/api/v1/auth/login", json={"username": name, "password": PASSWORD})).json()
    status = await (await client.get("/api/v1/auth/session", headers=bearer(login["token"]))).json()
    assert status["authenticated"] is True and status["via"] == "session" and status["user"]["username"] == name
    admin = await (await client.get("/api/v1/auth/session", headers=ADMIN)).json()
    assert admin["authenticated"] is True and admin["role"] == "admin"


async def test_the_docs_page_has_an_icon(client: test_utils.TestClient) -> None:
    page = await (await client.get("/api/docs")).text()
    assert '<link rel="icon" href="/api/icon.svg"' in page
    resp = await client.get("/api/icon.svg")
    assert resp.status == 200 and resp.content_type == "image/svg+xml" and (await resp.text()).startswith("<svg")
