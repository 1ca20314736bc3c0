"""`stoker audit verify` and `stoker audit query`: wire with ``add_commands(subparsers)``.

Top-level imports stay light; the handlers import what they need.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping
from datetime import datetime
from typing import Any


def add_commands(subparsers: Any) -> None:
    """Add the `audit` command group (verify, query) to a `stoker` argparse subparsers object."""
    audit = subparsers.add_parser("audit", help="verify and query the tamper-evident audit record")
    sub = audit.add_subparsers(title="audit commands", metavar="COMMAND")
    audit.set_defaults(handler=lambda args: (audit.print_help(), 2)[1])

    verify = sub.add_parser("verify", help="recompute the chain, HMACs and anchors; cross-check the streams",
                            description="Exit code 0: everything verifies; 1: a problem (the first bad record "
                                        "is named); 2: configuration error. Keys come from AUDIT_HMAC_KEY (or "
                                        "AUDIT_SALT) and AUDIT_HMAC_OLD_KEYS.")
    _connection_args(verify)
    verify.add_argument("--deep", action="store_true", help="also compare every record's event id with the stream")
    verify.add_argument("--json", action="store_true", help="print the report as JSON")
    verify.set_defaults(handler=run_verify)

    query = sub.add_parser("query", help="list audit records by time, actor, type or aggregate")
    _connection_args(query, nats=False)
    query.add_argument("--since", type=datetime.fromisoformat, help="occurred at or after (ISO 8601)")
    query.add_argument("--until", type=datetime.fromisoformat, help="occurred before (ISO 8601)")
    query.add_argument("--actor")
    query.add_argument("--type")
    query.add_argument("--aggregate", help="TYPE/ID, e.g. instance/0192...")
    query.add_argument("--after", type=int, help="page after this audit seq")
    query.add_argument("--limit", type=int, default=50)
    query.set_defaults(handler=run_query)


register = add_commands  # the libs/cli convention: `register(subparsers)`


def _connection_args(parser: argparse.ArgumentParser, *, nats: bool = True) -> None:
    parser.add_argument("--database-url", help="PostgreSQL DSN (default $DATABASE_URL)")
    if nats:
        parser.add_argument("--nats-url", help="NATS URL (default $NATS_URL)")
        parser.add_argument("--chain", help="audit chain id (default $AUDIT_CHAIN or main)")
        parser.add_argument("--stream", action="append", dest="streams",
                            help="an audited stream (repeatable; default $AUDIT_STREAMS or every event stream)")


def run_verify(args: argparse.Namespace, env: Mapping[str, str] = os.environ) -> int:
    """Handler of `stoker audit verify`."""
    import asyncio

    from libs.events import codec
    from services.audit.config import ConfigError

    try:
        report = asyncio.run(verify_from(args, env))
    except ConfigError as exc:
        print(f"audit verify: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(codec.encode(report.to_builtins()).decode())
    elif report.ok:
        lag = sum(report.lag.values())
        print(f"OK: {report.records} records (seq {report.first_seq}..{report.last_seq}), "
              f"{report.checkpoints} checkpoints verified" + (f"; {lag} event(s) not yet recorded" if lag else ""))
    else:
        assert report.first is not None
        print(f"FAILED at seq {report.first.seq}: {report.first.kind}: {report.first.reason}")
        for p in report.problems[1:]:
            print(f"  also at seq {p.seq}: {p.kind}: {p.reason}")
    return 0 if report.ok else 1


async def verify_from(args: argparse.Namespace, env: Mapping[str, str]) -> Any:
    """Connect as configured and verify."""
    import asyncpg
    from libs import natsconn
    from services.audit.check import verify_audit
    from services.audit.config import DEFAULT_STREAMS, ConfigError, keyring_from

    keyring = keyring_from(env)
    dsn = args.database_url or env.get("DATABASE_URL")
    nats_url = args.nats_url or env.get("NATS_URL")
    if not dsn or not nats_url:
        raise ConfigError("--database-url/DATABASE_URL and --nats-url/NATS_URL are required")
    chain = args.chain or env.get("AUDIT_CHAIN") or "main"
    streams = args.streams or [s for s in env.get("AUDIT_STREAMS", "").split(",") if s] or list(DEFAULT_STREAMS)
    nc = await natsconn.connect(nats_url, name="stoker-audit-verify")
    try:
        conn = await asyncpg.connect(dsn, timeout=10)
        try:
            return await verify_audit(conn, nc.jetstream(timeout=10), chain=chain, keyring=keyring, streams=streams,
                                      deep=args.deep, dsn=dsn)
        finally:
            await conn.close()
    finally:
        await nc.close()


def run_query(args: argparse.Namespace, env: Mapping[str, str] = os.environ) -> int:
    """Handler of `stoker audit query`: one page of records as JSON lines."""
    import asyncio

    import asyncpg

    from libs.events import codec
    from services.audit.api import record_json
    from services.audit.repository import Query, query

    dsn = args.database_url or env.get("DATABASE_URL")
    if not dsn:
        print("audit query: --database-url or DATABASE_URL is required", file=sys.stderr)
        return 2
    agg_type, _, agg_id = (args.aggregate or "").partition("/")
    q = Query(since=args.since, until=args.until, actor=args.actor, type=args.type,
              aggregate_type=agg_type or None, aggregate_id=agg_id or None, after=args.after, limit=args.limit)

    async def go() -> list[Any]:
        conn = await asyncpg.connect(dsn, timeout=10)
        try:
            return list(await query(conn, q))
        finally:
            await conn.close()

    for row in asyncio.run(go()):
        print(codec.encode(record_json(row)).decode())
    return 0
