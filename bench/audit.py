"""Benchmark: audit append and verify, each beside a raw asyncpg baseline in the same run.

    python -m bench.audit [--append 200000] [--records 1000000] [--batch 5000] [--e2e 50000]

append : the writer's path per batch (decode, redact, chain: SHA-256 + HMAC, COPY, cursors and
         head in one transaction, as the restricted role) vs raw ``copy_records_to_table`` of
         the same rows into a table like audit.records (same indexes). Goal: ratio >= 0.5.
verify : `verify_audit` over N stored records (canonical bytes, hash, link, HMAC, checkpoints,
         stream positions; one process per CPU, and one process alone) vs a raw read of the same
         rows with the same query. Goal: >= 200k/s.
e2e    : (extra) the whole service catching up on events already in JetStream vs a raw pull
         consumer fetching and acking the same messages.

Uses NATS_URL / DATABASE_URL if set, else embedded servers (libs.stack).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import asyncpg
import nats
from nats.js.api import AckPolicy, ConsumerConfig

from bench._nats import nats_server
from libs.events import Aggregate, Metadata, codec, streams, subjects
from libs.events.generation import GenerationRequested
from libs.events.pool import PrewarmRequested
from libs.events.store import EventStore
from services.audit import repository
from services.audit.app import AuditService
from services.audit.chain import Keyring
from services.audit.check import verify_audit
from services.audit.config import APP_ROLE
from services.audit.domain import GENESIS, ROW_COLUMNS, Head, Message, build, describe
from services.audit.testing import fresh_database, test_config
from services.audit.verify import StreamExtent
from services.audit.writer import Writer

STREAM = "BENCH"
KEY = Keyring.from_strings("bench-audit-key")


@contextlib.contextmanager
def postgres_server() -> Iterator[str]:
    """Yield a PostgreSQL DSN: DATABASE_URL, or a throwaway embedded server."""
    if os.environ.get("DATABASE_URL"):
        yield os.environ["DATABASE_URL"]
        return
    from libs.stack.postgres import EmbeddedPostgres

    with tempfile.TemporaryDirectory(prefix="stoker-bench-pg-") as tmp, \
            EmbeddedPostgres(Path(tmp) / "pgdata") as server:
        yield server.url


def messages(n: int, start: int = 1) -> list[Message]:
    """Realistic stream messages: small pool events and generation requests with a secret to redact."""
    store = EventStore(None)  # type: ignore[arg-type]  # only builds envelopes
    now = datetime.now(timezone.utc)
    out = []
    for seq in range(start, start + n):
        if seq % 2:
            agg = Aggregate(subjects.POOL, "instance", f"i{seq % 997}")
            event: object = PrewarmRequested(pool_id="default", count=seq % 5)
        else:
            agg = Aggregate(subjects.GENERATION, "job", f"j{seq}")
            event = GenerationRequested(user_id=f"u{seq % 50}", template="sdxl-portrait",
                                        params={"prompt": "a lighthouse at dusk", "steps": 30, "seed": seq,
                                                "api_key": "sk-live-123"}, estimated_cost=0.02)
        env = store.envelope(agg, event, 1, Metadata(actor=f"user:u{seq % 50}"))  # type: ignore[arg-type]
        out.append(Message(STREAM, subjects.aggregate_subject(agg), seq, now, codec.encode(env)))
    return out


async def prepare(dsn: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await repository.migrate(conn)
        await conn.execute("INSERT INTO audit.head (chain, seq, hash, hmac, recorded_at) "
                           "VALUES ('bench', 0, $1, '', now())", GENESIS.hash)
        await conn.execute("CREATE SCHEMA raw; CREATE TABLE raw.records (LIKE audit.records INCLUDING ALL)")
    finally:
        await conn.close()


async def bench_append(admin_dsn: str, n: int, batch: int) -> tuple[float, float]:
    """Records/s through the writer vs raw COPY of the same rows."""
    dsn = await fresh_database(admin_dsn, "bench_append")
    await prepare(dsn)
    msgs = messages(n)
    pool = await repository.create_pool(dsn, APP_ROLE)
    writer = Writer(pool, KEY, max_records=batch)
    async with pool.acquire() as conn:
        loaded = await repository.load_state(conn)
    assert loaded is not None
    writer.load(loaded)
    task = asyncio.create_task(writer.run())
    t0 = time.perf_counter()
    inflight: list[asyncio.Future[None]] = []
    for i in range(0, n, batch):  # as a fetcher does: the next batch is handed over while one commits
        inflight.append(writer.enqueue(STREAM, msgs[i:i + batch]))
        if len(inflight) >= 2:
            await inflight.pop(0)
    await asyncio.gather(*inflight)
    ours = n / (time.perf_counter() - t0)
    await writer.stop()
    await task
    assert writer.head.seq == n and writer.failures == 0

    rows, _ = build(GENESIS, [describe(m) for m in msgs], KEY, datetime.now(timezone.utc))
    conn = await asyncpg.connect(dsn)
    try:
        t0 = time.perf_counter()
        for i in range(0, n, batch):
            await conn.copy_records_to_table("records", schema_name="raw", columns=list(ROW_COLUMNS),
                                             records=rows[i:i + batch])
        raw = n / (time.perf_counter() - t0)
    finally:
        await conn.close()
    await pool.close()
    return ours, raw


async def fill(dsn: str, n: int, batch: int = 20_000) -> None:
    """N chained records, written fast (build + COPY), for the verify benchmark."""
    await prepare(dsn)
    conn = await asyncpg.connect(dsn)
    try:
        head: Head = GENESIS
        for i in range(0, n, batch):
            rows, head = build(head, [describe(m) for m in messages(min(batch, n - i), i + 1)], KEY,
                               datetime.now(timezone.utc))
            await conn.copy_records_to_table("records", schema_name="audit", columns=list(ROW_COLUMNS), records=rows)
        await conn.execute("UPDATE audit.head SET seq = $1, hash = $2, hmac = $3", head.seq, head.hash, head.hmac)
        await conn.execute("INSERT INTO audit.cursors VALUES ($1, $2)", STREAM, n)
        await conn.execute("VACUUM ANALYZE audit.records")
    finally:
        await conn.close()


async def bench_verify(admin_dsn: str, nats_url: str, n: int) -> tuple[float, float, float, bool]:
    """Records/s for verification (one process, and parallel) vs a raw read of the same rows."""
    dsn = await fresh_database(admin_dsn, "bench_verify")
    t0 = time.perf_counter()
    await fill(dsn, n)
    print(f"         (filled {n:,} records in {time.perf_counter() - t0:.1f}s)", flush=True)
    nc = await nats.connect(nats_url)
    conn = await asyncpg.connect(dsn)
    try:
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            t0 = time.perf_counter()
            seen = 0
            async for rows in repository.verify_rows(conn):
                seen += len(rows)
            raw = seen / (time.perf_counter() - t0)
        rates, ok = [], True
        for workers in (1, None):
            t0 = time.perf_counter()
            report = await verify_audit(conn, nc.jetstream(), chain="bench", keyring=KEY, streams=[STREAM],
                                        extents={STREAM: StreamExtent(1, n)}, dsn=dsn, workers=workers)
            rates.append(n / (time.perf_counter() - t0))
            ok = ok and report.ok and report.records == n
    finally:
        await conn.close()
        await nc.close()
    return rates[0], rates[1], raw, ok


async def bench_e2e(admin_dsn: str, nats_url: str, n: int) -> tuple[float, float]:
    """Records/s for the service catching up from JetStream vs a raw fetch+ack of the same messages."""
    nc = await nats.connect(nats_url)
    js = nc.jetstream(publish_async_max_pending=4096)
    await streams.ensure_streams(js)
    stream = subjects.event_stream(subjects.POOL)
    first = (await js.stream_info(stream)).state.last_seq
    store = EventStore(js)
    pending = []
    for i in range(n):
        agg = Aggregate(subjects.POOL, "benche2e", f"a{i % 100}")
        env = store.envelope(agg, PrewarmRequested(pool_id="p", count=i), i // 100 + 1, Metadata(actor="bench"))
        pending.append(await js.publish_async(subjects.aggregate_subject(agg), codec.encode(env), wait_stall=30))
        if len(pending) >= 2000:
            await asyncio.gather(*pending)
            pending.clear()
    await asyncio.gather(*pending)

    sub = await js.pull_subscribe(">", stream=stream, config=ConsumerConfig(
        ack_policy=AckPolicy.ALL, opt_start_seq=first + 1, deliver_policy="by_start_sequence"))  # type: ignore[arg-type]
    t0 = time.perf_counter()
    seen = 0
    while seen < n:
        msgs = await sub.fetch(1000, timeout=5)
        for m in msgs:
            m.metadata  # noqa: B018  # parse positions as the service does
        seen += len(msgs)
        await msgs[-1].ack()
    raw = n / (time.perf_counter() - t0)
    await sub.unsubscribe()

    dsn = await fresh_database(admin_dsn, "bench_e2e")
    config = test_config(nats_url, dsn, AUDIT_STREAMS=stream, AUDIT_START="all", AUDIT_BATCH="1000",
                         AUDIT_ANCHOR_SECONDS="3600", AUDIT_ANCHOR_EVERY="100000")
    service = AuditService(config)
    await service.start()
    t0 = time.perf_counter()
    await service.wait_caught_up(3600)
    total = (await js.stream_info(stream)).state.last_seq
    ours = total / (time.perf_counter() - t0)
    await service.stop()
    await nc.close()
    return ours, raw


async def main(args: argparse.Namespace) -> None:
    with nats_server() as nats_url, postgres_server() as dsn:
        ours, raw = await bench_append(dsn, args.append, args.batch)
        print(f"append : {ours:10,.0f} records/s   raw asyncpg COPY: {raw:10,.0f} rows/s   "
              f"ratio {ours / raw:.2f} (goal >= 0.50)   [{args.append:,} records, batches of {args.batch:,}]", flush=True)
        single, parallel, raw, ok = await bench_verify(dsn, nats_url, args.records)
        print(f"verify : {parallel:10,.0f} records/s   raw read of the same rows: {raw:10,.0f} rows/s   "
              f"ratio {parallel / raw:.2f}   (goal >= 200,000/s)   [{args.records:,} records, "
              f"{min(os.cpu_count() or 1, 4)} processes, verified={ok}]", flush=True)
        print(f"         one process: {single:10,.0f} records/s   ratio {single / raw:.2f}", flush=True)
        if args.e2e:
            ours, raw = await bench_e2e(dsn, nats_url, args.e2e)
            print(f"e2e    : {ours:10,.0f} records/s   raw pull fetch+ack: {raw:10,.0f} msgs/s   "
                  f"ratio {ours / raw:.2f}   [{args.e2e:,} events from JetStream]", flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--append", type=int, default=200_000)
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=5000)
    parser.add_argument("--e2e", type=int, default=50_000, help="0 to skip")
    # SIGTERM (e.g. `timeout`) unwinds normally, so the embedded servers are stopped, not orphaned.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    asyncio.run(main(parser.parse_args()))
