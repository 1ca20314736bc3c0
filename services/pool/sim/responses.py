"""Response helpers shared by the sim's HTTP apps."""

from __future__ import annotations

from typing import Any

import msgspec
from aiohttp import web

_encoder = msgspec.json.Encoder()


def json_response(obj: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    """JSON with Content-Type exactly ``application/json`` (the Vast CLI rejects a charset)."""
    resp = web.Response(body=_encoder.encode(obj), status=status, headers=headers)
    resp.headers["Content-Type"] = "application/json"
    return resp


def comfy_json(obj: Any, status: int = 200) -> web.Response:
    """JSON the way ComfyUI's aiohttp server sends it (with charset)."""
    return web.Response(body=_encoder.encode(obj), status=status, content_type="application/json", charset="utf-8")


def vast_error(status: int, msg: str, error: str | None = None, headers: dict[str, str] | None = None) -> web.Response:
    """A Vast-style error body: ``{"success": false, "error": ..., "msg": ...}``."""
    body: dict[str, Any] = {"success": False, "msg": msg}
    if error:
        body["error"] = error
    return json_response(body, status=status, headers=headers)
