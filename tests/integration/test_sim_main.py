"""``python -m services.pool.sim`` starts, answers and shuts down cleanly on SIGTERM."""

import asyncio
import re
import signal
import sys
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parents[2]


async def test_module_runs_until_sigterm() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "services.pool.sim", "--port", "0", "--config-json", '{"seed": 9, "offer_count": 12}',
        cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        async with asyncio.timeout(20):
            assert proc.stdout is not None
            line = (await proc.stdout.readline()).decode()
            match = re.search(r"(http://127\.0\.0\.1:\d+)", line)
            assert match, line
            url = match.group(1)
            async with aiohttp.ClientSession() as s:
                async with s.get(url + "/_sim/config") as resp:
                    assert (await resp.json())["seed"] == 9
                async with s.post(url + "/api/v0/bundles/", json={}, headers={"Authorization": "Bearer k"}) as resp:
                    assert len((await resp.json())["offers"]) == 12
            proc.send_signal(signal.SIGTERM)
            out, err = await proc.communicate()
            assert proc.returncode == 0, err.decode()
            assert "simulator stopped" in out.decode()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_bad_config_json_exits_2() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "services.pool.sim", "--config-json", '{"nope": 1}', cwd=ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    async with asyncio.timeout(20):
        _, err = await proc.communicate()
    assert proc.returncode == 2 and b"bad --config-json" in err
