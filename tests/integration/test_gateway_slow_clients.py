"""Slow and idle connections (item 9) against the real gateway process (`python -m services.gateway`) on
loopback: incomplete heads and bodies time out, a flood of idle sockets stays under the connection cap,
/healthz keeps answering, and resource errors are logged once per interval."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from libs.stack.ports import free_port
from services.gateway.testing import gateway_env

pytestmark = pytest.mark.timeout(90)
ROOT = Path(__file__).resolve().parents[2]


@contextlib.asynccontextmanager
async def gateway_process(nats_url: str, database_url: str, tmp_path: Path, **env: str) -> AsyncIterator[str]:
    port = free_port()
    full = {**os.environ, **gateway_env(nats_url, database_url, STOKER_GATEWAY_PORT=str(port), **env)}
    log = (tmp_path / "gateway.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "services.gateway"], cwd=ROOT, env=full, stdout=log,
                            stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as session:
            deadline = time.monotonic() + 30
            while True:
                assert proc.poll() is None, (tmp_path / "gateway.log").read_text()
                with contextlib.suppress(aiohttp.ClientError):
                    async with session.get(url + "/healthz") as resp:
                        if resp.status == 200:
                            break
                assert time.monotonic() < deadline, "the gateway did not start"
                await asyncio.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        log.close()


async def closed_within(reader: asyncio.StreamReader, seconds: float) -> tuple[bool, bytes]:
    """Whether the server closed the connection within ``seconds``, and what it sent before."""
    data = b""
    with contextlib.suppress(TimeoutError, ConnectionError):
        async with asyncio.timeout(seconds):
            while chunk := await reader.read(65536):
                data += chunk
            return True, data
    return False, data


async def test_incomplete_heads_and_bodies_time_out(nats_url, database_url, tmp_path) -> None:
    async with gateway_process(nats_url, database_url, tmp_path, STOKER_HEADER_TIMEOUT_S="1",
                               STOKER_BODY_TIMEOUT_S="1") as url:
        port = int(url.rsplit(":", 1)[1])
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # never finished
        closed, _ = await closed_within(reader, 4)
        writer.close()
        assert closed, "an incomplete request head was kept open"

        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"POST /api/v1/auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 100\r\n\r\n{\"username\": ")
        closed, data = await closed_within(reader, 5)
        writer.close()
        assert data.startswith(b"HTTP/1.1 408") and b'"REQUEST_TIMEOUT"' in data, data


async def test_idle_floods_stay_under_the_cap_and_healthz_answers(nats_url, database_url, tmp_path) -> None:
    async with gateway_process(nats_url, database_url, tmp_path, STOKER_MAX_CONNECTIONS="50",
                               STOKER_HEADER_TIMEOUT_S="60") as url:
        port = int(url.rsplit(":", 1)[1])
        idle = [await asyncio.open_connection("127.0.0.1", port) for _ in range(300)]
        try:
            async with aiohttp.ClientSession() as session:
                for _ in range(5):
                    start = time.monotonic()
                    async with session.get(url + "/healthz", timeout=aiohttp.ClientTimeout(total=5)) as resp:
                        assert resp.status == 200
                    assert time.monotonic() - start < 2
            await asyncio.sleep(0.5)
            still_open = 0
            for reader, _ in idle:
                closed, _ = await closed_within(reader, 0.01)
                still_open += not closed
            assert still_open <= 50, still_open  # the oldest idle sockets were closed to make room
        finally:
            for _, writer in idle:
                writer.close()


def test_resource_errors_are_logged_once_per_interval(caplog) -> None:
    from services.gateway.server import AcceptErrorLog  # here: the process tests above run on any version

    caplog.set_level(logging.INFO)
    now = [0.0]
    handler = AcceptErrorLog(every_s=10, clock=lambda: now[0])
    loop = asyncio.new_event_loop()
    try:
        exc = OSError(errno.EMFILE, "Too many open files")
        for i in range(1000):
            now[0] = i * 0.01
            handler(loop, {"message": "socket.accept() out of system resource", "exception": exc})
        now[0] = 11.0
        handler(loop, {"message": "socket.accept() out of system resource", "exception": exc})
    finally:
        loop.close()
    records = [r for r in caplog.records if "out of system resource" in r.getMessage()]
    assert len(records) == 2 and "999 more" in records[1].getMessage()
    assert not any(r.exc_info for r in records)
