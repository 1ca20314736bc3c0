"""Run the agent on a GPU host: ``python -m services.agent`` (or ``stoker agent``)."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import sys
from collections.abc import Mapping

import aiohttp
from aiohttp import web

from libs.observability import logs

from . import config as agent_config
from .comfy import COMFYUI_PIN, ComfyProcess, install_comfyui
from .download import Downloader
from .files import DiskFiles
from .gpu import read_gpus
from .join import JoinError, default_advertise, heartbeat_forever, join
from .models import parse_models
from .runtime import Agent
from .web import build_app

log = logging.getLogger("stoker.agent")


async def serve(cfg: agent_config.AgentConfig, stop: asyncio.Event) -> None:
    """Start ComfyUI (installing it if needed), the downloads and the proxy; run until ``stop``."""
    cfg.log_dir.mkdir(parents=True, exist_ok=True)
    prepare = None
    if not (cfg.comfy_dir / "main.py").exists() and cfg.install_comfyui:
        # Installed while the agent already answers: the pool sees "booting: installing ComfyUI" meanwhile.
        prepare = (f"installing ComfyUI {COMFYUI_PIN} into {cfg.comfy_dir}",
                   lambda: install_comfyui(cfg.comfy_dir, cfg.log_dir / "comfyui-install.log"))
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=300),
                                     auto_decompress=False) as session:
        secret, models, beat = cfg.secret, list(cfg.models), None
        if cfg.join_url:
            gpus = await read_gpus()
            joined = await join(session, cfg.join_url, cfg.join_token, cfg.advertise or default_advertise(cfg.port),
                                cfg.name or socket.gethostname(), gpus[0]["name"] if gpus else "")
            secret = joined["secret"]
            logs.redact(secret)
            models = models or parse_models(",".join(joined.get("models") or []))
            log.info("joined %s as node %s", cfg.join_url, joined["node_id"])
            beat = asyncio.create_task(heartbeat_forever(session, cfg.join_url, cfg.join_token, joined["node_id"],
                                                         float(joined.get("heartbeat_s") or 10)))
        agent = Agent(secret=secret, models=models,
                      comfy=ComfyProcess(cfg.comfy_dir, cfg.comfy_port, cfg.log_dir / "comfyui.log"),
                      files=DiskFiles(cfg.comfy_dir), fetcher=Downloader(session, tokens=cfg.tokens),
                      session=session, gpus=read_gpus, prepare=prepare)
        runner = web.AppRunner(build_app(agent), access_log=None)
        await runner.setup()
        await web.TCPSite(runner, cfg.listen_host, cfg.port).start()
        log.info("stoker agent listening on %s:%d, ComfyUI on 127.0.0.1:%d", cfg.listen_host, cfg.port, cfg.comfy_port)
        await agent.start()
        try:
            await stop.wait()
        finally:
            if beat is not None:
                beat.cancel()
            await agent.stop()
            await runner.cleanup()


def run(env: Mapping[str, str]) -> int:
    """Entry point shared by ``python -m services.agent`` and ``stoker agent``."""
    try:
        cfg = agent_config.load(env)
    except agent_config.AgentConfigError as exc:
        print(f"stoker agent: {exc}", file=sys.stderr)
        return 2
    logs.setup_logging("agent", env, secrets=[s for s in (cfg.secret, cfg.join_token, *cfg.tokens.values()) if s])

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await serve(cfg, stop)

    try:
        asyncio.run(main())
    except JoinError as exc:
        print(f"stoker agent: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(run(os.environ))
