"""Benchmark: the latency the Stoker agent's authenticated proxy adds to a ComfyUI call, in the same run.

    python -m bench.agent [--requests 2000] [--rounds 3] [--path /system_stats]

One child process serves a ComfyUI stand-in on loopback (the ``/system_stats`` body of ComfyUI
0.3.64, ~1 KB) and the real agent app in front of it (secret check, header filtering, forwarding
over a keep-alive session). The parent sends sequential keep-alive GETs alternately straight to
ComfyUI and through the agent, and reports p50/p99 of both and the difference. Goal: <= 2 ms p50 added.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import aiohttp
from aiohttp import web

SECRET = "bench-instance-secret-0123456789abcdef"
STATS = {"system": {"os": "posix", "ram_total": 135089651712, "ram_free": 120336011264, "comfyui_version": "0.3.64",
                    "required_frontend_version": "1.27.10", "python_version": "3.11.7", "pytorch_version": "2.8.0+cu128",
                    "embedded_python": False, "argv": ["main.py", "--listen", "127.0.0.1", "--port", "18188"]},
         "devices": [{"name": "cuda:0 NVIDIA GeForce RTX 4090 : cudaMallocAsync", "type": "cuda", "index": 0,
                      "vram_total": 25757220864, "vram_free": 25057220864, "torch_vram_total": 0,
                      "torch_vram_free": 0}]}


class _Comfy:
    def __init__(self, url: str) -> None:
        self.url = url

    async def start(self, on_exit: Callable[[int | None], None]) -> None:
        return None

    def log_tail(self, lines: int) -> list[str]:
        return []

    async def stop(self) -> None:
        return None


async def serve() -> None:
    """Child: ComfyUI stand-in + agent; print both ports; run until stdin closes."""
    from services.agent.files import DiskFiles
    from services.agent.runtime import Agent
    from services.agent.web import build_app

    body = json.dumps(STATS).encode()

    async def stats(request: web.Request) -> web.Response:
        return web.Response(body=body, content_type="application/json")

    comfy_app = web.Application()
    comfy_app.router.add_get("/system_stats", stats)
    comfy_app.router.add_get("/history/{id}", stats)
    runners = []
    comfy_runner = web.AppRunner(comfy_app, access_log=None)
    await comfy_runner.setup()
    comfy_site = web.TCPSite(comfy_runner, "127.0.0.1", 0)
    await comfy_site.start()
    runners.append(comfy_runner)
    comfy_port = comfy_site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    async with aiohttp.ClientSession(auto_decompress=False) as session:
        agent = Agent(secret=SECRET, models=[], comfy=_Comfy(f"http://127.0.0.1:{comfy_port}"),
                      files=DiskFiles(Path("/nonexistent-bench")), fetcher=None,  # type: ignore[arg-type]
                      session=session, health_every_s=0.05)
        agent_runner = web.AppRunner(build_app(agent), access_log=None)
        await agent_runner.setup()
        agent_site = web.TCPSite(agent_runner, "127.0.0.1", 0)
        await agent_site.start()
        runners.append(agent_runner)
        await agent.start()
        while agent.state.phase != "ready":
            await asyncio.sleep(0.05)
        agent_port = agent_site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        print(f"{comfy_port} {agent_port}", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
        await agent.stop()
    for runner in runners:
        await runner.cleanup()


async def measure(url: str, n: int, headers: dict[str, str]) -> list[float]:
    """Latencies (ms) of ``n`` sequential keep-alive GETs."""
    out: list[float] = []
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1), headers=headers) as session:
        for _ in range(20):  # warm the connection
            async with session.get(url) as resp:
                await resp.read()
        for _ in range(n):
            t0 = time.perf_counter()
            async with session.get(url) as resp:
                await resp.read()
                assert resp.status == 200, resp.status
            out.append((time.perf_counter() - t0) * 1000)
    return out


def pct(values: list[float], q: float) -> float:
    """The q-quantile (0..1) of values."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def main(args: argparse.Namespace) -> int:
    """Parent: start the servers, alternate rounds, report."""
    proc = subprocess.Popen([sys.executable, "-m", "bench.agent", "--serve"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        comfy_port, agent_port = proc.stdout.readline().split()
        direct, proxied = [], []
        for _ in range(args.rounds):
            direct += await measure(f"http://127.0.0.1:{comfy_port}{args.path}", args.requests, {})
            proxied += await measure(f"http://127.0.0.1:{agent_port}{args.path}", args.requests,
                                     {"Authorization": f"Bearer {SECRET}"})
    finally:
        if proc.stdin is not None:
            proc.stdin.close()
        proc.wait(10)
    d50, d99, p50, p99 = pct(direct, 0.5), pct(direct, 0.99), pct(proxied, 0.5), pct(proxied, 0.99)
    print(f"GET {args.path}, {len(direct)} requests each, sequential keep-alive, same run")
    print(f"  direct ComfyUI     p50 {d50:6.3f} ms  p99 {d99:6.3f} ms  mean {statistics.mean(direct):6.3f} ms")
    print(f"  through the agent  p50 {p50:6.3f} ms  p99 {p99:6.3f} ms  mean {statistics.mean(proxied):6.3f} ms")
    print(f"  added by the agent p50 {p50 - d50:6.3f} ms  p99 {p99 - d99:6.3f} ms  (goal: <= 2 ms p50)")
    return 0 if p50 - d50 <= 2.0 else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bench.agent", description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--path", default="/system_stats")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    ns = parser.parse_args()
    if ns.serve:
        asyncio.run(serve())
        sys.exit(0)
    sys.exit(asyncio.run(main(ns)))
