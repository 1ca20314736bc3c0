"""The official vastai CLI 1.9.1 driven against the simulator."""

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

import aiohttp

from services.pool.sim import SimServer
from services.pool.sim.config import merge_config
from services.pool.sim.testing import FAST_CONFIG

VASTAI = str(Path(sys.executable).with_name("vastai"))



async def cli(sim: SimServer, home: Path, *args: str) -> tuple[str, str]:
    """Run one CLI command against the sim; returns (stdout, stderr)."""
    env = {**os.environ, "VAST_URL": sim.url, "VASTAI_NO_UPDATE_CHECK": "1", "HOME": str(home)}
    env.pop("VAST_API_KEY", None)
    proc = await asyncio.create_subprocess_exec(
        VASTAI, *args, "--url", sim.url, "--api-key", "test", "--raw",
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env)
    try:
        async with asyncio.timeout(60):
            out, err = await proc.communicate()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode in (0, 1), err
    return out.decode(), err.decode()


async def state(sim: SimServer) -> dict[str, Any]:
    async with aiohttp.ClientSession() as s, s.get(sim.url + "/_sim/state") as resp:
        return await resp.json()


async def test_search_create_show_destroy(sim: SimServer, tmp_path: Path) -> None:
    async with asyncio.timeout(60):
        out, err = await cli(sim, tmp_path, "search", "offers",
                             "gpu_name=RTX_4090 num_gpus=1 disk_space>=50 dph<=2 reliability>0.9 geolocation in "
                             "[US,CA,DE,NL,SE,JP,PL] cuda_vers>=12.1", "-o", "dph+", "--limit", "5", "--storage", "50")
        offers = json.loads(out)
        assert offers, err
        assert all(o["gpu_name"] == "RTX 4090" and o["num_gpus"] == 1 and o["rentable"] for o in offers)
        prices = [o["dph_total"] for o in offers]
        assert prices == sorted(prices) and len(offers) <= 5

        out, err = await cli(sim, tmp_path, "create", "instance", str(offers[0]["id"]), "--image", "vastai/comfy:latest",
                             "--disk", "50", "--env", "-p 8188:8188 -e STOKER_MODELS=sd15.safetensors",
                             "--onstart-cmd", "bash /start.sh", "--label", "pool-a", "--ssh", "--direct")
        created = json.loads(out)
        assert created["success"] is True and created["instance_api_key"], err
        iid = created["new_contract"]

        await asyncio.sleep(0.5)
        out, err = await cli(sim, tmp_path, "show", "instances")
        rows = json.loads(out)
        assert [r["id"] for r in rows] == [iid], err
        assert rows[0]["label"] == "pool-a" and rows[0]["extra_env"]["STOKER_MODELS"] == "sd15.safetensors"

        out, err = await cli(sim, tmp_path, "show", "instance", str(iid))
        row = json.loads(out)
        assert row["actual_status"] == "running" and row["image_runtype"] == "ssh_direc ssh_proxy", err
        assert row["public_ipaddr"] == "127.0.0.1" and int(row["ports"]["8188/tcp"][0]["HostPort"]) > 0
        assert row["onstart"] == "bash /start.sh" and row["dph_total"] > 0

        out, err = await cli(sim, tmp_path, "destroy", "instance", str(iid), "-y")
        assert out.strip() == "" and err.strip() == ""
        out, _ = await cli(sim, tmp_path, "show", "instance", str(iid))
        assert json.loads(out) == {"instances": None}
        snap = await state(sim)
        assert snap["billing_instance_ids"] == [] and snap["instances"][0]["billed_usd"] > 0


async def test_label_stop_start_logs_and_user(sim: SimServer, tmp_path: Path) -> None:
    async with asyncio.timeout(60):
        offer = sim.market.search({"rentable": {"eq": True}})[0]["id"]
        out, _ = await cli(sim, tmp_path, "create", "instance", str(offer), "--image", "img:1", "--disk", "20")
        iid = json.loads(out)["new_contract"]
        out, _ = await cli(sim, tmp_path, "label", "instance", str(iid), "pool-b")
        assert f"label for {iid} set to pool-b." in out
        out, _ = await cli(sim, tmp_path, "stop", "instance", str(iid))
        assert f"stopping instance {iid}." in out
        assert sim.market.row(sim.market.instances[iid])["actual_status"] == "exited"
        out, _ = await cli(sim, tmp_path, "start", "instance", str(iid))
        assert f"starting instance {iid}." in out
        out, _ = await cli(sim, tmp_path, "logs", str(iid), "--tail", "200")
        assert "Pulling image img:1" in out
        out, _ = await cli(sim, tmp_path, "show", "user")
        user = json.loads(out)
        assert 0 < user["credit"] < FAST_CONFIG.initial_credit and "api_key" not in user
        assert sim.market.instances[iid].label == "pool-b"


async def test_errors_and_rate_limit_retries(sim: SimServer, tmp_path: Path) -> None:
    async with asyncio.timeout(60):
        out, err = await cli(sim, tmp_path, "create", "instance", "12345", "--image", "x", "--disk", "10")
        assert out == ""
        assert json.loads(err.strip().splitlines()[-1]) == {
            "error": True, "status_code": 404, "msg": "Instance type by id 12345 is not available."}
        # the CLI's own side requests (role check, gpu names) are cached in HOME by now
        await cli(sim, tmp_path, "show", "instances")
        sim.market.config = merge_config(sim.market.config, {"rate_limit_retry_after": 0.1})
        sim.market.forced.rate_limited_requests = 2  # 3 attempts by default: two 429s, then success
        out, err = await cli(sim, tmp_path, "show", "instances")
        assert json.loads(out) == [], err
        assert sim.market.forced.rate_limited_requests == 0
        sim.market.forced.rate_limited_requests = 3
        out, err = await cli(sim, tmp_path, "show", "instances")
        assert '"status_code": 429' in err
