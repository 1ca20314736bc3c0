"""How the gateway serves the UI: the shell at /, files under /ui/ with the right types, nothing else."""

from __future__ import annotations

import pytest

from tests.e2e.harness import Stack

pytestmark = pytest.mark.timeout(30)


async def get(stack: Stack, path: str) -> tuple[int, dict[str, str], bytes]:
    async with stack.http.get(stack.url + path, allow_redirects=False) as resp:
        return resp.status, dict(resp.headers), await resp.read()


async def test_shell_and_static_files(stack: Stack) -> None:
    status, headers, body = await get(stack, "/")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert headers["Content-Security-Policy"].startswith("default-src 'self'")  # the same headers as the API
    assert b'<script type="module" src="/ui/js/main.js">' in body and b"style=" not in body  # nothing inline
    assert b"Stoker is running" in body  # the noscript fallback
    for path, kind in [("/ui/js/main.js", "text/javascript"), ("/ui/app.css", "text/css"), ("/ui/icon.svg", "image/svg+xml")]:
        status, headers, _ = await get(stack, path)
        assert status == 200 and headers["Content-Type"].startswith(kind), path
        assert headers["Cache-Control"] == "no-cache" and headers["X-Content-Type-Options"] == "nosniff"


@pytest.mark.parametrize("path", ["/ui/", "/ui/index.html", "/ui/nope.js", "/ui/../pyproject.toml", "/ui/%2e%2e/pyproject.toml",
                                  "/ui/js/../../services/gateway/web.py", "/ui/.hidden.js", "/index.html"])
async def test_nothing_else_is_served(stack: Stack, path: str) -> None:
    status, headers, body = await get(stack, path)
    assert status == 404, (path, body[:100])
    assert headers["Content-Type"].startswith("application/json") and b'"NOT_FOUND"' in body
