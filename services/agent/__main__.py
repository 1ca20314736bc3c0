"""Run the agent on a GPU host: ``python -m services.agent`` (or ``stoker agent``)."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from collections.abc import Mapping

import aiohttp
from aiohttp import web

from libs.observability import logs

from . import config as agent_config
from .comfy import ComfyProcess, install_comfyui
from .download import Downloader
from .files import DiskFiles
from .gpu import read_gpus
from .runtime import Agent
from .web import build_app

log = logging.getLogger("stoker.agent")


async def serve(cfg: agent_config.AgentConfig, stop: asyncio.Event) -> None:
    """Start ComfyUI (installing it if needed), the downloads and the proxy; run until ``stop``."""
    cfg.log_dir.mkdir(parents=True, exist_ok=True)
    if not (cfg.comfy_dir / "main.py").exists() and cfg.install_comfyui:
        log.info("no ComfyUI at %s: installing the pinned version", cfg.comfy_dir)
        await install_comfyui(cfg.comfy_dir, cfg.log_dir / "comfyui-install.log")
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=300),
                                     auto_decompress=False) as session:
        agent = Agent(secret=cfg.secret, models=list(cfg.models),
                      comfy=ComfyProcess(cfg.comfy_dir, cfg.comfy_port, cfg.log_dir / "comfyui.log"),
                      files=DiskFiles(cfg.comfy_dir), fetcher=Downloader(session, tokens=cfg.tokens),
                      session=session, gpus=read_gpus)
        runner = web.AppRunner(build_app(agent), access_log=None)
        await runner.setup()
        await web.TCPSite(runner, cfg.listen_host, cfg.port).start()
        log.info("stoker agent listening on %s:%d, ComfyUI on 127.0.0.1:%d", cfg.listen_host, cfg.port, cfg.comfy_port)
        await agent.start()
        try:
            await stop.wait()
        finally:
            await agent.stop()
            await runner.cleanup()


def run(env: Mapping[str, str]) -> int:
    """Entry point shared by ``python -m services.agent`` and ``stoker agent``."""
    try:
        cfg = agent_config.load(env)
    except agent_config.AgentConfigError as exc:
        print(f"stoker agent: {exc}", file=sys.stderr)
        return 2
    logs.setup_logging("agent", env, secrets=[cfg.secret, *cfg.tokens.values()])

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await serve(cfg, stop)

    asyncio.run(main())
    return 0


if __name__ == "__main__":
    sys.exit(run(os.environ))
