"""The minimal gateway against real NATS and PostgreSQL: probes, placeholder page, JSON errors."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest_asyncio
from aiohttp import test_utils

from services.gateway.app import create_app


@pytest_asyncio.fixture
async def client(nats_url: str, database_url: str) -> AsyncIterator[test_utils.TestClient]:
    app = create_app({"NATS_URL": nats_url, "DATABASE_URL": database_url})
    async with test_utils.TestClient(test_utils.TestServer(app)) as client:
        yield client


async def test_probes_and_page(client: test_utils.TestClient) -> None:
    resp = await client.get("/healthz")
    assert resp.status == 200 and await resp.json() == {"status": "ok"}
    resp = await client.get("/readyz")
    assert resp.status == 200
    resp = await client.get("/")
    assert resp.status == 200 and "Stoker is running" in await resp.text()


async def test_errors_have_the_json_shape(client: test_utils.TestClient) -> None:
    resp = await client.get("/no/such/page")
    assert resp.status == 404
    assert await resp.json() == {"error": {"code": "NOT_FOUND", "message": "Not Found"}}
    resp = await client.post("/healthz")
    assert resp.status == 405 and "GET" in resp.headers["Allow"]
    assert (await resp.json())["error"]["code"] == "METHOD_NOT_ALLOWED"


async def test_readyz_is_503_while_postgres_is_down(client: test_utils.TestClient, postgres_server) -> None:
    await postgres_server.stop()
    resp = await client.get("/readyz")
    body = await resp.json()
    assert resp.status == 503
    assert body["error"]["code"] == "NOT_READY" and "PostgreSQL" in body["error"]["message"]
    await postgres_server.start()
    resp = await client.get("/readyz")
    assert resp.status == 200
