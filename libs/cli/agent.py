"""`stoker agent`: run the Stoker agent on this GPU host (ComfyUI, model downloads, authenticated proxy)."""

from __future__ import annotations

import argparse
import os
from typing import Any


def register(subparsers: Any) -> None:
    """Add `stoker agent` to the command line."""
    parser = subparsers.add_parser(
        "agent", help="run the agent on a GPU host",
        description="Supervise ComfyUI on loopback, download the pool's models and serve ComfyUI behind an "
        "authenticated proxy. Settings come from the environment (STOKER_INSTANCE_SECRET, STOKER_MODELS, "
        "HF_TOKEN, CIVITAI_TOKEN, COMFYUI_DIR, STOKER_AGENT_PORT).")
    parser.add_argument("--port", type=int, help="public port (default $STOKER_AGENT_PORT or 8188)")
    parser.add_argument("--comfy-dir", help="ComfyUI folder (default $COMFYUI_DIR or the image's)")
    parser.add_argument("--join", metavar="URL", help="own box: join the pool behind this Stoker gateway")
    parser.add_argument("--token", help="the join token an admin made (POST /api/v1/pool/join-tokens)")
    parser.add_argument("--advertise", metavar="URL", help="the address Stoker calls this box on "
                        "(default http://<this host's IP>:<port>)")
    parser.add_argument("--name", help="this box's name in the pool (default: the host name)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Start the agent and run until SIGINT/SIGTERM."""
    from services.agent.__main__ import run as run_agent

    env = dict(os.environ)
    if args.port:
        env["STOKER_AGENT_PORT"] = str(args.port)
    if args.comfy_dir:
        env["COMFYUI_DIR"] = args.comfy_dir
    for flag, name in (("join", "STOKER_JOIN_URL"), ("token", "STOKER_JOIN_TOKEN"), ("advertise", "STOKER_ADVERTISE_URL"),
                       ("name", "STOKER_NODE_NAME")):
        if getattr(args, flag):
            env[name] = getattr(args, flag)
    return run_agent(env)
