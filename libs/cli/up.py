"""`stoker up`: run the whole stack on this machine."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from libs.stack.config import PROVIDERS, SERVICE_ORDER, UpOptions


def register(subparsers: Any) -> None:
    """Add `stoker up` to the command line."""
    parser = subparsers.add_parser(
        "up",
        help="start NATS, PostgreSQL and every service",
        description="Start embedded NATS and PostgreSQL (unless NATS_URL / DATABASE_URL are set) and every service; "
        "Ctrl-C stops them all.",
    )
    parser.add_argument("--data-dir", type=Path, help="where state is kept (default ./.stoker)")
    parser.add_argument("--port", type=int, help="gateway port (default 8080)")
    parser.add_argument("--nats-port", type=int, help="embedded NATS port (default: a free one)")
    parser.add_argument("--pg-port", type=int, help="embedded PostgreSQL port (default: a free one)")
    parser.add_argument("--prod", action="store_true", help="production mode: no generated secrets, no dev key")
    parser.add_argument("--provider", choices=PROVIDERS, help="GPU provider (default $STOKER_PROVIDER or sim)")
    parser.add_argument(
        "--services",
        type=_service_list,
        metavar="NAME[,NAME]",
        help=f"run only these services (default: every one present of {', '.join(SERVICE_ORDER)})",
    )
    parser.add_argument(
        "--otel",
        nargs="?",
        const="http://127.0.0.1:4318",
        metavar="ENDPOINT",
        help="export OpenTelemetry traces over OTLP/HTTP (default endpoint http://127.0.0.1:4318, e.g. Jaeger)",
    )
    parser.set_defaults(handler=run)


def _service_list(raw: str) -> tuple[str, ...]:
    names = tuple(name.strip() for name in raw.split(",") if name.strip())
    unknown = [name for name in names if name not in SERVICE_ORDER]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown service(s): {', '.join(unknown)}")
    return names


def run(args: argparse.Namespace) -> int:
    """Run `stoker up` with the parsed flags."""
    import os

    from libs.stack.up import run as run_up

    if args.otel:  # services inherit the environment: the standard OTEL_* variable is all they need
        os.environ["OTEL_EXPORTER_OTLP_ENDPOINT"] = args.otel

    options = UpOptions(
        data_dir=args.data_dir,
        port=args.port,
        nats_port=args.nats_port,
        pg_port=args.pg_port,
        prod=args.prod,
        provider=args.provider,
        services=args.services,
    )
    return run_up(options)
