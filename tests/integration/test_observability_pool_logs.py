"""``python -m services.pool`` logs JSON lines (time, level, service, message, trace id in a span), never a secret;
it serves its metrics on ``STOKER_METRICS_PORT``.

The pool runs as a real process against real NATS and the simulator, with a Vast.ai key, model
tokens and the admin key configured. It rents an instance (the key goes in every provider request,
the tokens into the rental's environment), then is sent a provider-key change whose actor text
carries secrets, inside a trace the test starts: the line it logs must be masked and carry that
trace id.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import nats.errors
import pytest
from nats.aio.client import Client as NatsClient

from libs.events import codec
from libs.observability import tracing
from services.pool import api as pool_api
from services.pool.sim.server import SimServer

pytestmark = pytest.mark.timeout(60)
ROOT = Path(__file__).resolve().parents[2]
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
FAST_READY = {"probe_initial_backoff_s": 0.1, "probe_max_backoff_s": 0.3, "probe_timeout_s": 30}
ANY_OFFER = {"gpu_names": [], "max_dph": 100.0, "min_disk_gb": 0, "min_reliability": 0, "verified_only": False,
             "min_direct_ports": 0}


async def command(nc: NatsClient, subject: str, body: dict[str, Any], headers: dict[str, str] | None = None) -> Any:
    """Send a pool command; its result (the reply must be ok)."""
    msg = await nc.request(subject, codec.encode(body), timeout=5, headers=headers)
    reply = msgspec.json.decode(msg.data, type=pool_api.Reply)
    assert reply.ok, reply.error
    return reply.result


async def until(probe: Any, timeout: float) -> Any:
    """Poll an async probe until it returns something truthy."""
    async with asyncio.timeout(timeout):
        while not (found := await probe()):
            await asyncio.sleep(0.1)
        return found


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_pool_logs_are_json_lines_without_any_configured_secret(nats_url: str, nc: NatsClient, sim: SimServer,
                                                                       unique_id: str) -> None:
    secrets = {"VASTAI_API_KEY": f"vast-key-{unique_id}", "HF_TOKEN": f"hf_token{unique_id}",
               "CIVITAI_TOKEN": f"civitai-{unique_id}", "STOKER_ADMIN_KEY": f"admin-key-{unique_id}"}
    new_key = f"rotated-key-{unique_id}"
    pool_id = f"log{unique_id}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STOKER_", "OTEL_"))}
    env |= {**secrets, "PYTHONPATH": str(ROOT), "NATS_URL": nats_url, "STOKER_PROVIDER": "sim", "VAST_URL": sim.url,
            "STOKER_POOL_ID": pool_id, "STOKER_RECONCILE_INTERVAL": "0.2", "STOKER_LOG_LEVEL": "DEBUG",
            "STOKER_REPLICA": f"pool-{unique_id}", "STOKER_METRICS_PORT": str(port := free_port()),
            "STOKER_METRICS_HOST": "127.0.0.1"}
    with tempfile.TemporaryFile() as err:
        proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "services.pool", cwd=ROOT, env=env,
                                                    stdout=asyncio.subprocess.DEVNULL, stderr=err)
        try:
            async def answers() -> bool:
                try:
                    return bool(await command(nc, pool_api.for_pool(pool_api.STATUS, pool_id), {"actor": "test"}))
                except (nats.errors.Error, TimeoutError):  # not up yet
                    return False
            await until(answers, 30)
            await command(nc, pool_api.for_pool(pool_api.CONFIGURE, pool_id), {"actor": "test", "changes": {
                "desired_size": 1, "max_size": 1, "offer_filter": ANY_OFFER, "readiness": FAST_READY}})

            async def rented() -> bool:
                status = await command(nc, pool_api.for_pool(pool_api.STATUS, pool_id), {"actor": "test"})
                return any(i["state"] == "ready" for i in status["instances"])
            await until(rented, 30)
            actor = f"admin:{secrets['STOKER_ADMIN_KEY']}/{secrets['HF_TOKEN']}/{new_key}"
            await command(nc, pool_api.for_pool(pool_api.SET_PROVIDER_KEY, pool_id), {"actor": actor, "provider": "vastai", "api_key": new_key},
                          headers={"traceparent": TRACEPARENT})
            async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}/metrics") as resp:
                exposed = await resp.text()  # the process serves its metrics too
            await command(nc, pool_api.for_pool(pool_api.SAFE_MODE, pool_id), {"actor": "test", "enabled": True})  # stop renting
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), 15)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        err.seek(0)
        text = err.read().decode()

    for value in [*secrets.values(), new_key]:
        assert value not in text, f"a configured secret was logged:\n{text}"
    lines = [json.loads(line) for line in text.splitlines() if line.strip()]  # every line is one JSON object
    assert len(lines) >= 5, text
    for line in lines:
        assert {"time", "level", "service", "logger", "message"} <= set(line), line
        assert line["service"] == "pool" and line["level"] in ("debug", "info", "warning", "error", "critical")
        assert datetime.fromisoformat(line["time"]).tzinfo is not None
    messages = [line["message"] for line in lines]
    assert any("rented offer" in m for m in messages), messages  # the provider calls were made (and logged)
    replaced = [line for line in lines if "replaced at runtime" in line["message"]]
    assert len(replaced) == 1 and "admin:***/***/***" in replaced[0]["message"], replaced
    assert replaced[0]["trace_id"] == tracing.trace_id(TRACEPARENT)  # logged inside the command's span
    assert all(len(line.get("trace_id", "0" * 32)) == 32 for line in lines)
    assert proc.returncode == 0, text
    assert 'stoker_pool_instances{state="ready"} 1' in exposed and 'stoker_pool_rentals_total{outcome="rented"}' in exposed
