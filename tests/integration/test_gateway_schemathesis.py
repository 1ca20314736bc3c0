"""The OpenAPI document matches behaviour (issue 12 item 11): a bounded schemathesis run against a real gateway.

Status codes, content types and response bodies of every operation (the ComfyUI-compatible routes
included) must be what the document says, with 0 failures. Fixed seed, few examples per operation,
a time budget: cheap enough for every CI run.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import nats
import pytest

from services.gateway.testing import ADMIN_KEY, bearer, gateway_client, gateway_env, generation_on, pool_on_sim, \
    unique_pool_id, user_token

pytestmark = pytest.mark.timeout(110)

# Streams never end on their own: a WebSocket (needs an upgrade) and Server-Sent Events.
NOT_REQUEST_RESPONSE = ["/comfy/ws", "/comfy/api/ws", "/api/v1/stream"]
CHECKS = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance"


async def test_the_api_answers_as_its_openapi_document_says(nats_url: str, database_url: str, tmp_path: Path) -> None:
    st = Path(sys.executable).with_name("st")
    nc = await nats.connect(nats_url)
    pool_id = unique_pool_id()
    try:
        async with pool_on_sim(nc, nc.jetstream(), pool_id), generation_on(nats_url, pool_id), \
                gateway_client(gateway_env(nats_url, database_url, STOKER_POOL_ID=pool_id)) as client:
            _, session = await user_token(client, "fuzz-" + pool_id)
            resp = await client.post("/api/v1/tokens", json={"name": "fuzz"}, headers=bearer(session))
            assert resp.status == 201, await resp.text()
            token = (await resp.json())["token"]  # an API token: the fuzzer's logout cannot end it
            base = str(client.make_url("")).rstrip("/")
            # Everything as a user (admin operations answer 403), then admin reads as the admin.
            runs = [("user", [f"Authorization: Bearer {token}"], ["--max-time", "30"]),
                    ("admin", [f"X-Admin-Api-Key: {ADMIN_KEY}"], ["--max-time", "12", "--include-method", "GET",
                                                                    # no audit service in this stack: 503 there
                                                                    "--exclude-path-regex", "^/api/v1/audit"])]
            results = [await fuzz(st, base, headers, extra, tmp_path / name) for name, headers, extra in runs]
    finally:
        await nc.close()
    for code, text in results:
        failures = text[text.find("FAILURES"):] if "FAILURES" in text else text[-6000:]
        assert code == 0, failures[:15000]


async def fuzz(st: Path, base: str, headers: list[str], extra: list[str], out_dir: Path) -> tuple[int, str]:
    """One schemathesis run: its exit code and output (also kept in ``out_dir``)."""
    out_dir.mkdir()
    argv = [str(st), "run", f"{base}/api/openapi.json", "--url", base, "--checks", CHECKS,
            "--max-examples", "4", "--seed", "20261203", "--workers", "1", "--phases", "examples,coverage,fuzzing",
            "--request-timeout", "10", "--no-shrink", "--suppress-health-check", "all", "--warnings", "off",
            "--report", "junit", "--report-dir", str(out_dir), *extra]
    for header in headers:
        argv += ["--header", header]
    for path in NOT_REQUEST_RESPONSE:
        argv += ["--exclude-path", path]
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, cwd=out_dir,
        env={**os.environ, "NO_COLOR": "1", "SCHEMATHESIS_TELEMETRY": "false"})
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    text = out.decode(errors="replace")
    (out_dir / "schemathesis.txt").write_text(text)
    return proc.returncode or 0, text
