"""Files of a simulated ComfyUI host as real ComfyUI resolves them, and the agent's file routes.

``resolve`` follows ComfyUI's ``folder_paths.get_annotated_filepath``: ``"name [output]"``,
``[input]`` and ``[temp]`` pick the folder (input by default) and the rest is joined to it, so
``..`` climbs out of it as it does on a real host. The routes stand in for the Stoker agent's
``DELETE /agent/files/...`` (contract: ``libs/contracts/host_files.py``) until simulated hosts
run the real agent.
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable, MutableMapping

from aiohttp import web

from libs.contracts import host_files as hf
from services.pool.sim.responses import comfy_json

ROOT = "/ComfyUI"
Store = MutableMapping[tuple[str, str, str], bytes]


def resolve(name: str) -> tuple[str, str, str] | None:
    """(folder, subfolder, filename) an image input names, or None when it is outside every folder."""
    folder = "input"
    for kind in hf.FOLDERS:
        if name.endswith(f"[{kind}]"):
            folder, name = kind, name[:-len(f" [{kind}]")]
            break
    full = posixpath.normpath(posixpath.join(f"{ROOT}/{folder}", name))
    for kind in hf.FOLDERS:
        if full.startswith(f"{ROOT}/{kind}/"):
            sub, _, filename = full[len(f"{ROOT}/{kind}/"):].rpartition("/")
            return kind, sub, filename
    return None


def add_routes(app: web.Application, store: Callable[[], Store]) -> None:
    """Serve the agent's removal routes over the host's file store."""

    async def remove_one(request: web.Request) -> web.Response:
        folder, path = request.match_info["folder"], request.match_info["path"]
        if folder not in hf.FOLDERS or not hf.safe_path(path):
            return comfy_json({"error": {"code": "BAD_PATH", "message": "unknown folder or unsafe path"}}, status=400)
        sub, filename = hf.split(path)
        removed = [f"{folder}/{path}"] if store().pop((folder, sub, filename), None) is not None else []
        return comfy_json({"removed": removed})

    async def wipe(request: web.Request) -> web.Response:
        files = store()
        removed = [f"{k}/{sub}/{n}" if sub else f"{k}/{n}" for k, sub, n in list(files)]
        files.clear()
        return comfy_json({"removed": removed})

    app.router.add_route("DELETE", hf.FILES_ROUTE + "/{folder}/{path:.+}", remove_one)
    app.router.add_route("DELETE", hf.FILES_ROUTE, wipe)
