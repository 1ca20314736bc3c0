"""Helpers for tests that drive the simulator over HTTP (used by the sim's and the pool's tests)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import aiohttp

from services.pool.sim.config import SimConfig
from services.pool.sim.server import SimServer

T = TypeVar("T")

# The instance secret tests put in a rental's env, as the pool does (STOKER_INSTANCE_SECRET).
TEST_INSTANCE_SECRET = "sim-test-instance-secret-0123456789"
_MARKET_PATHS = ("/api/v0/", "/api/v1/", "/_sim")

# Everything takes tens of milliseconds: a rental answers ComfyUI in ~0.3 s.
FAST_CONFIG = SimConfig(
    schedule_delay=0.05, pull_seconds=0.1, extract_seconds=0.1, comfy_boot_delay=0.1,
    model_download_seconds=0.1, restart_seconds=0.1, step_seconds=0.01, node_seconds=0.001,
    model_load_seconds=0.01, tick_seconds=0.02,
)


async def instance_auth(request: aiohttp.ClientRequest, handler: aiohttp.ClientHandlerType) -> aiohttp.ClientResponse:
    """Client middleware: send the test instance secret to rented hosts (not to the market API), like Stoker does."""
    if not request.url.path.startswith(_MARKET_PATHS) and "Authorization" not in request.headers:
        request.headers["Authorization"] = f"Bearer {TEST_INSTANCE_SECRET}"
    return await handler(request)


def vast_headers(api_key: str = "test") -> dict[str, str]:
    """Authorization header of the Vast API."""
    return {"Authorization": f"Bearer {api_key}"}


async def eventually(probe: Callable[[], Awaitable[T | None]], timeout: float = 10.0, every: float = 0.02) -> T:
    """Poll ``probe`` until it returns something other than None/False."""
    async with asyncio.timeout(timeout):
        while True:
            value = await probe()
            if value is not None and value is not False:
                return value
            await asyncio.sleep(every)


async def vast_json(session: aiohttp.ClientSession, sim: SimServer, method: str, path: str,
                    body: Any = None, params: dict[str, str] | None = None) -> tuple[int, Any]:
    """Call the sim's Vast API; returns (status, decoded JSON)."""
    async with session.request(method, sim.url + path, json=body if body is not None else ({} if method != "GET" else None),
                               params=params, headers=vast_headers()) as resp:
        return resp.status, await resp.json(content_type=None)


async def rent_comfy(session: aiohttp.ClientSession, sim: SimServer, models: str = "",
                     gpu: str = "RTX 4090", label: str | None = "sim-test") -> tuple[int, str]:
    """Rent an offer with port 8188 mapped and wait until ComfyUI answers and lists ``models``.

    ``session`` must send the instance secret to hosts (``ClientSession(middlewares=(instance_auth,))``).

    ``models`` is the ``STOKER_MODELS`` value (comma-separated, ``folder/`` prefix optional).
    Returns (instance id, ComfyUI base URL).
    """
    _, found = await vast_json(session, sim, "POST", "/api/v0/bundles/",
                               {"gpu_name": {"eq": gpu}, "rentable": {"eq": True}, "order": [["dph_total", "asc"]]})
    offer_id = found["offers"][0]["id"]
    env = {"-p 8188:8188": "1", "STOKER_INSTANCE_SECRET": TEST_INSTANCE_SECRET,
           **({"STOKER_MODELS": models} if models else {})}
    status, created = await vast_json(session, sim, "PUT", f"/api/v0/asks/{offer_id}/",
                                      {"client_id": "me", "image": "vastai/comfy:latest", "env": env,
                                       "disk": 40.0, "label": label, "runtype": "ssh"})
    assert status == 200, created
    iid = int(created["new_contract"])

    async def comfy_url() -> str | None:
        _, shown = await vast_json(session, sim, "GET", f"/api/v0/instances/{iid}/", params={"owner": "me"})
        row = shown["instances"]
        if not row or "8188/tcp" not in (row.get("ports") or {}):
            return None
        url = f"http://{row['public_ipaddr']}:{row['ports']['8188/tcp'][0]['HostPort']}"
        async with session.get(url + "/system_stats") as resp:
            return url if resp.status == 200 else None

    url = await eventually(comfy_url)
    for item in filter(None, (m.strip() for m in models.split(","))):
        folder, _, name = item.rpartition("/")

        async def listed(folder: str = folder or "checkpoints", name: str = name) -> bool:
            async with session.get(f"{url}/models/{folder}") as resp:
                return name in await resp.json()
        await eventually(listed)
    return iid, url
