"""`stoker simulate`: replay a demand trace against warm-pool policies and print what each costs."""

from __future__ import annotations

import argparse
import re
import sys
from datetime import datetime, timedelta, timezone
from typing import Any

SPEC_HELP = ("a policy: KIND or KIND:key=value,... (kinds: fixed n idle_s; seed idle_s; reactive idle_s; "
             "queue_depth target_s idle_s; histogram head tail range_h; time_of_week threshold idle_s bucket_min; "
             "schedule idle_s, weekdays 09-18 keep 1; adaptive tail threshold drain_s). Repeat to compare; default: the built-in candidates")


def register(subparsers: Any) -> None:
    """Add the `simulate` command."""
    p = subparsers.add_parser(
        "simulate", help="replay demand against warm-pool policies: $ and waits per policy, vs the oracle",
        description="Trace CSV: arrival_time,gpu_seconds[,checkpoint] (ISO 8601 or seconds; header optional). "
                    "Uses the pool's real planner and instance fold on a virtual clock.")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--trace", help="CSV file of arrival_time,gpu_seconds[,checkpoint]")
    src.add_argument("--from-history", action="store_true", help="the pool's and generation's recorded events")
    p.add_argument("--since", default="14d", help="with --from-history: how far back (e.g. 14d, 36h)")
    p.add_argument("--nats", default=None, help="NATS URL for --from-history (default $NATS_URL)")
    p.add_argument("--policy", action="append", default=[], help=SPEC_HELP)
    p.add_argument("--target-p95", type=float, help="also name the cheapest policy with p95 wait <= this (s)")
    p.add_argument("--boot-min", type=float, help="boot time minimum, s (default 120, or fitted)")
    p.add_argument("--boot-max", type=float, help="boot time maximum, s (default 360, or fitted)")
    p.add_argument("--failure-rate", type=float, help="share of rentals that fail (default 0.1, or fitted)")
    p.add_argument("--dph", type=float, help="$/h of an instance (default 0.40, or fitted)")
    p.add_argument("--max-size", type=int, default=8)
    p.add_argument("--min-size", type=int, default=0)
    p.add_argument("--seed", type=int, default=1, help="random seed of boot times and failures")
    p.add_argument("--chart", help="write a PNG chart here")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(handler=run)


def parse_spec(text: str) -> Any:
    """A PolicySpec from KIND or KIND:key=value,..."""
    from libs.events import pool as ev

    from .catalog import make

    kind, _, rest = text.partition(":")
    params: dict[str, float] = {}
    for part in filter(None, rest.split(",")):
        key, eq, value = part.partition("=")
        try:
            params[key.strip()] = float(value)
        except ValueError:
            raise ValueError(f"policy {text!r}: {part!r} is not key=number") from None
        if not eq:
            raise ValueError(f"policy {text!r}: {part!r} is not key=number")
    if kind not in ("fixed", "seed", "reactive", "queue_depth", "histogram", "time_of_week", "schedule", "adaptive"):
        raise ValueError(f"unknown policy kind {kind!r}")
    spec = ev.PolicySpec(kind=kind, params=params,  # type: ignore[arg-type]
                         windows=(ev.ScheduleWindow(),) if kind == "schedule" else ())
    make(spec)  # refuses unknown parameters
    return spec


def parse_since(text: str) -> timedelta:
    """'14d', '36h', '90m' -> a timedelta."""
    m = re.fullmatch(r"(\d+(?:\.\d+)?)([dhm])", text.strip())
    if not m:
        raise ValueError(f"--since {text!r}: use a number and d, h or m (e.g. 14d)")
    return timedelta(**{{"d": "days", "h": "hours", "m": "minutes"}[m.group(2)]: float(m.group(1))})


def run(args: argparse.Namespace) -> int:
    """Handler of `stoker simulate`."""
    import msgspec

    from .catalog import candidates
    from .model import BootModel
    from .report import choose, compare, table, to_json
    from .trace import TraceError, parse_csv

    try:
        specs = [parse_spec(s) for s in args.policy] or candidates()
        model = BootModel(seed=args.seed)
        if args.trace:
            try:
                with open(args.trace, encoding="utf-8-sig") as f:  # a spreadsheet's BOM is fine
                    jobs = parse_csv(f.read(), source=args.trace)
            except (OSError, UnicodeDecodeError) as exc:
                raise TraceError(f"cannot read {args.trace}: {exc}") from None
        else:
            jobs, model = _from_history(args, model)
        overrides = {k: v for k, v in (("boot_min_s", args.boot_min), ("boot_max_s", args.boot_max),
                                       ("failure_rate", args.failure_rate), ("dph", args.dph)) if v is not None}
        model = msgspec.structs.replace(model, **overrides)
        if not (0 < model.boot_min_s <= model.boot_max_s) or not 0 <= model.failure_rate < 1 or model.dph < 0:
            raise ValueError("need 0 < boot-min <= boot-max, 0 <= failure-rate < 1 and dph >= 0")
        if args.max_size < 1 or not 0 <= args.min_size <= args.max_size:
            raise ValueError("need max-size >= 1 and 0 <= min-size <= max-size")
    except (TraceError, ValueError) as exc:
        print(f"stoker simulate: {exc}", file=sys.stderr)
        return 2
    comparison = compare(jobs, specs, model, max_size=args.max_size, min_size=args.min_size)
    if args.json:
        out = to_json(comparison)
        if args.target_p95 is not None:
            best = choose(comparison, args.target_p95)
            out["chosen"] = best.policy if best else None
        print(msgspec.json.encode(out).decode())
    else:
        print(table(comparison))
        if args.target_p95 is not None:
            best = choose(comparison, args.target_p95)
            print(f"\ntarget p95 <= {args.target_p95:.0f} s: " + (
                f"{best.policy} at ${best.total:.2f} (p95 {best.p95:.0f} s)" if best else "no policy meets it"))
    if args.chart:
        from .chart import render
        with open(args.chart, "wb") as f:
            f.write(render(comparison))
        print(f"chart: {args.chart}", file=sys.stderr)
    return 0


def _from_history(args: argparse.Namespace, model: Any) -> tuple[Any, Any]:
    import asyncio
    import os

    from .history import jobs_from, model_from
    from .trace import TraceError

    since = datetime.now(timezone.utc) - parse_since(args.since)
    url = args.nats or os.environ.get("NATS_URL", "nats://127.0.0.1:4222")
    try:
        records = asyncio.run(_read_events(url, since))
    except Exception as exc:  # connection refused, no stream: say so, no trace
        raise TraceError(f"cannot read the event history from {url}: {type(exc).__name__}: {exc}") from None
    jobs = jobs_from(records, since)
    if not jobs:
        raise TraceError(f"no generation requests since {since:%Y-%m-%d %H:%M} UTC")
    return jobs, model_from(records, since, default=model)


async def _read_events(url: str, since: datetime) -> list[Any]:
    import nats

    from libs.events import Recorded, subjects
    from libs.events.replay import replay

    nc = await nats.connect(url, name="stoker-simulate", max_reconnect_attempts=1, connect_timeout=5)
    try:
        js = nc.jetstream()
        out: list[Any] = []
        for ctx in (subjects.POOL, subjects.GENERATION):
            async for rec in replay(js, subjects.event_stream(ctx), subjects.events_filter(ctx), since=since):
                if isinstance(rec, Recorded):
                    out.append(rec)
        return out
    finally:
        await nc.close()
