"""The gateway's ComfyUI info proxy reads a whole answer (under the size cap), however it arrives."""

import asyncio

import msgspec
import pytest
from aiohttp import web

from libs.events import codec
from services.gateway import comfy_proxy
from services.gateway.comfy_proxy import InstanceInfo
from services.pool.instance import Instance
from services.pool.view import PoolView

pytestmark = pytest.mark.timeout(20)


def big_object_info(n: int = 400) -> dict:
    return {f"Node{i}": {"input": {"required": {"text": ["STRING", {"default": "x" * 1000}]}}, "name": f"Node{i}",
                         "output": [], "category": "test"} for i in range(n)}


async def serve_slowly(body: bytes) -> tuple[web.AppRunner, str]:
    """A ComfyUI whose answer arrives in 32 KB pieces (as a real one over a network does)."""
    async def object_info(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"content-type": "application/json"})
        resp.content_length = len(body)
        await resp.prepare(request)
        for i in range(0, len(body), 32 * 1024):
            await resp.write(body[i:i + 32 * 1024])
            await asyncio.sleep(0.005)
        await resp.write_eof()
        return resp

    app = web.Application()
    app.router.add_get("/object_info", object_info)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}"


def pool_with(base_url: str) -> PoolView:
    inst = Instance(id="i1", pool_id="p", phase="ready", base_url=base_url)
    return PoolView(pool_id="p", instances={"i1": inst})


async def test_object_info_larger_than_a_buffer_is_read_whole() -> None:
    data = big_object_info()
    body = codec.encode(data)
    assert len(body) > 300 * 1024
    runner, url = await serve_slowly(body)
    try:
        answer = await InstanceInfo(lambda: pool_with(url)).get("/object_info")
    finally:
        await runner.cleanup()
    assert answer.source == "instance"
    assert len(answer.data) == len(data) and answer.data["Node399"]["name"] == "Node399"


async def test_an_answer_above_the_cap_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(comfy_proxy, "MAX_BYTES", 100 * 1024)
    runner, url = await serve_slowly(codec.encode(big_object_info()))
    try:
        answer = await InstanceInfo(lambda: pool_with(url)).get("/object_info")
    finally:
        await runner.cleanup()
    assert answer.source == "fallback"
    assert msgspec.json.encode(answer.data)  # the built-in answer, still JSON
