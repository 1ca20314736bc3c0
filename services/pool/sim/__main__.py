"""Run the marketplace simulator: ``python -m services.pool.sim --port 8780 [--realistic]``."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from pathlib import Path

import msgspec

from services.pool.sim.config import SimConfig, merge_config
from services.pool.sim.server import start_sim


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(prog="python -m services.pool.sim", description=__doc__)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8780)
    p.add_argument("--realistic", action="store_true", help="minutes-long rentals and real-world fault rates")
    p.add_argument("--config-json", default="", help="JSON object of SimConfig fields to override")
    p.add_argument("--state-file", default="",
                   help="keep the market in this file across restarts (default: sim/market.json in "
                        "$STOKER_DATA_DIR when that is set, else in memory only)")
    return p.parse_args(argv)


def state_path(args: argparse.Namespace, env: dict[str, str] | None = None) -> Path | None:
    """Where the market is kept: --state-file, else the stack's data dir, else nowhere."""
    env = dict(os.environ) if env is None else env
    if args.state_file:
        return Path(args.state_file)
    data_dir = env.get("STOKER_DATA_DIR")
    return Path(data_dir) / "sim" / "market.json" if data_dir else None


def build_config(args: argparse.Namespace) -> SimConfig:
    """The preset chosen by the flags, with --config-json applied on top."""
    config = SimConfig.realistic() if args.realistic else SimConfig()
    if args.config_json:
        config = merge_config(config, msgspec.json.decode(args.config_json))
    return config


async def run(config: SimConfig, host: str, port: int, state: Path | None = None) -> None:
    """Serve until SIGINT/SIGTERM, then shut down cleanly."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    server = await start_sim(config, host, port, state_path=state)
    print(f"stoker marketplace simulator listening on {server.url}", flush=True)
    try:
        await stop.wait()
    finally:
        await server.close()
        print("simulator stopped", flush=True)


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    args = parse_args(argv)
    try:
        config = build_config(args)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        print(f"bad --config-json: {exc}", file=sys.stderr)
        return 2
    asyncio.run(run(config, args.host, args.port, state_path(args)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
