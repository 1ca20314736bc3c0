"""The web UI: ``/`` serves the app shell, ``/ui/<file>`` its static files from the ``web/`` folder.

The UI is plain ES modules and CSS with no build step; it talks to the same API as everyone
else. Routing is a hash router in the browser, so the gateway only ever serves one page.
``STOKER_WEB_DIR`` points at another copy of ``web/`` (an installed package has none beside it).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path

from aiohttp import web

from services.gateway import api_meta

log = logging.getLogger("stoker.gateway")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

DEFAULT_ROOT = Path(__file__).resolve().parents[2] / "web"
SHELL = "index.html"
PREFIX = "/ui/"
# Only these are served (nosniff needs the right type); anything else in web/ stays private.
CONTENT_TYPES = {
    ".js": "text/javascript",
    ".css": "text/css",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".json": "application/json",
    ".woff2": "font/woff2",
}
CACHE = {"Cache-Control": "no-cache"}  # revalidate every time: a new release is picked up at once


def web_root(env: Mapping[str, str]) -> Path | None:
    """The folder holding the UI, or None when there is none to serve."""
    root = Path(env["STOKER_WEB_DIR"]) if env.get("STOKER_WEB_DIR") else DEFAULT_ROOT
    return root.resolve() if (root / SHELL).is_file() else None


def _shell(root: Path) -> Handler:
    async def shell(request: web.Request) -> web.StreamResponse:
        """The app shell; the browser routes from here."""
        return web.FileResponse(root / SHELL, headers={**CACHE, "Content-Type": "text/html; charset=utf-8"})

    return shell


def _static(root: Path) -> Handler:
    async def static(request: web.Request) -> web.StreamResponse:
        """One file of the UI; a path leaving the folder, a hidden file or an unknown type is a 404."""
        rel = request.match_info["path"]
        path = (root / rel).resolve()
        content_type = CONTENT_TYPES.get(path.suffix)
        if (content_type is None or not path.is_relative_to(root) or not path.is_file()
                or any(part.startswith(".") for part in Path(rel).parts)):
            raise web.HTTPNotFound()
        return web.FileResponse(path, headers={**CACHE, "Content-Type": content_type})

    return static


def add_routes(app: web.Application, env: Mapping[str, str]) -> None:
    """Serve the UI at ``/`` (the API's placeholder page when the ``web/`` folder is missing)."""
    root = web_root(env)
    if root is None:
        log.warning("no web UI found (web/index.html, or STOKER_WEB_DIR): serving the placeholder page")
        app.router.add_get("/", api_meta.index)
        return
    app.router.add_get("/", _shell(root))
    app.router.add_get(PREFIX + "{path:.+}", _static(root))
