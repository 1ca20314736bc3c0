"""Output bytes stream chunk by chunk from the real JetStream object store (objects of many chunks too)."""

from __future__ import annotations

import hashlib
import os

import pytest
from aiohttp import test_utils, web
from nats.js import JetStreamContext
from nats.js.api import ObjectMeta

from libs.events import generation as ev
from libs.events import subjects
from services.gateway.errors import error_middleware
from services.gateway.gen_outputs import stream_output
from services.generation.outputs import JetStreamObjects

pytestmark = pytest.mark.timeout(30)


def output(name: str, data: bytes, content_type: str = "image/png", filename: str = "x.png") -> ev.Output:
    return ev.Output(object_name=name, filename=filename, content_type=content_type, size=len(data),
                     sha256=hashlib.sha256(data).hexdigest())


async def test_large_outputs_stream_and_unsafe_types_download(js: JetStreamContext, unique_id: str) -> None:
    await JetStreamObjects(js).ensure()
    store = await js.object_store(subjects.OUTPUT_BUCKET)
    big = os.urandom(700 * 1024)  # several 128 KiB chunks
    page = b"<script>alert(1)</script>"
    outputs = {"big": output(f"gen/u/{unique_id}/00-big.png", big),
               "page": output(f"gen/u/{unique_id}/01-page.html", page, "text/html", "page.html"),
               "gone": output(f"gen/u/{unique_id}/02-gone.png", b"x")}
    await store.put(outputs["big"].object_name, big, meta=ObjectMeta(name=outputs["big"].object_name))
    await store.put(outputs["page"].object_name, page, meta=ObjectMeta(name=outputs["page"].object_name))

    async def handler(request: web.Request) -> web.StreamResponse:
        return await stream_output(request, js, outputs[request.match_info["key"]])

    app = web.Application(middlewares=[error_middleware])
    app.router.add_get("/{key}", handler)
    async with test_utils.TestClient(test_utils.TestServer(app)) as client:
        resp = await client.get("/big")
        assert resp.status == 200 and await resp.read() == big
        assert resp.headers["Content-Length"] == str(len(big)) and resp.headers["Content-Type"] == "image/png"
        assert (await client.get("/big", headers={"If-None-Match": resp.headers["ETag"]})).status == 304
        resp = await client.get("/page")
        assert resp.headers["Content-Type"] == "application/octet-stream"  # never rendered as HTML
        assert resp.headers["Content-Disposition"].startswith("attachment;") and await resp.read() == page
        resp = await client.get("/gone")
        assert resp.status == 404 and (await resp.json())["error"]["code"] == "NOT_FOUND"
