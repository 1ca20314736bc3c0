"""Verification against the real stores: checkpoints from JetStream, rows from PostgreSQL, stream extents.

The order matters: anchors are read first (each refers to rows committed before it was
published), then one repeatable-read snapshot of the database, then the streams' extents (so
every cursor in the snapshot is within them). Events appended meanwhile show up as lag.

Large chains are verified in parallel: the snapshot is exported, worker processes each verify
a contiguous range of sequences in it, and ``merge_segments`` checks the joins.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import multiprocessing
import os
from collections.abc import Mapping, Sequence
from contextlib import aclosing
from typing import Any, NamedTuple

import asyncpg
import msgspec
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from libs.events import codec
from libs.events.reader import read_until_caught_up
from services.audit import repository
from services.audit.anchor import load_checkpoints
from services.audit.chain import Keyring
from services.audit.verify import (
    ChainVerifier,
    Checkpoint,
    Problem,
    Report,
    Segment,
    StreamExtent,
    merge_segments,
)

PARALLEL_MIN = 200_000  # records: below this, one process is faster than starting workers


class _Id(msgspec.Struct):
    id: str = ""


_id_decoder = codec.decoder_for(_Id)


async def stream_extent(js: JetStreamContext, stream: str) -> StreamExtent:
    """Which sequences a stream holds now (first, last, and any deleted in between)."""
    try:
        resp: Any = await js._api_request(f"{js._prefix}.STREAM.INFO.{stream}",
                                          codec.encode({"deleted_details": True}), timeout=10)
    except NotFoundError:
        return StreamExtent(1, 0)
    state = resp["state"]
    last = int(state.get("last_seq", 0))
    first = max(1, int(state.get("first_seq", 0)))
    return StreamExtent(first, last, frozenset(state.get("deleted") or ()))


async def stream_event_ids(js: JetStreamContext, stream: str) -> dict[int, str]:
    """Every message's event id by sequence ("" when it has none): the deep cross-check."""
    ids: dict[int, str] = {}
    reader = read_until_caught_up(js, stream, ">")
    async with aclosing(reader):
        async for d in reader:
            try:
                ids[d.seq] = _id_decoder.decode(d.data).id
            except (msgspec.DecodeError, msgspec.ValidationError):
                ids[d.seq] = ""
    return ids


async def verify_audit(conn: asyncpg.Connection, js: JetStreamContext, *, chain: str, keyring: Keyring,
                       streams: Sequence[str], deep: bool = False, chunk: int = 20_000, dsn: str | None = None,
                       workers: int | None = None, parallel_min: int = PARALLEL_MIN,
                       extents: Mapping[str, StreamExtent] | None = None) -> Report:
    """Recompute the chain, every HMAC and checkpoint, and cross-check it with the streams.

    With ``dsn`` (to open worker connections), chains of ``parallel_min`` records or more are
    split over ``workers`` processes (default: one per CPU, at most 4). ``extents`` replaces
    reading the streams' extents (benchmarks of synthetic chains).
    """
    anchors = await load_checkpoints(js, chain)
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        head = await conn.fetchrow("SELECT chain, seq FROM audit.head")
        if head is None:
            return _single(Problem("truncated", 1, "the database holds no audit chain (audit.head is empty)"))
        if head["chain"] != chain:
            return _single(Problem("altered", 0, f"the database holds chain {head['chain']!r}, not {chain!r}"))
        cursors = {r["stream"]: r["applied_seq"] for r in await conn.fetch("SELECT stream, applied_seq FROM audit.cursors")}
        stored = await repository.checkpoints(conn)
        if extents is None:
            extents = {s: await stream_extent(js, s) for s in streams}
        event_ids = {s: await stream_event_ids(js, s) for s in streams} if deep else None
        verifier = ChainVerifier(chain=chain, keyring=keyring, checkpoints=[*stored, *anchors], streams=extents,
                                 cursors=cursors, head_seq=head["seq"], event_ids=event_ids)
        lo, hi = await conn.fetchrow("SELECT min(seq), max(seq) FROM audit.records")
        count = workers or min(os.cpu_count() or 1, 4)
        if dsn and not deep and count > 1 and lo is not None and hi - lo + 1 >= max(parallel_min, 2 * count):
            verifier.resume(await _in_parallel(conn, dsn, verifier, keyring, extents, lo, hi, count, chunk))
        else:
            async for rows in repository.verify_rows(conn, chunk):
                verifier.feed(rows)
                if verifier.done:
                    break
    return verifier.finish()


class _Job(NamedTuple):
    """One worker's segment: sequences ``start..end`` of the exported snapshot."""

    dsn: str
    snapshot: str
    chain: str
    keys: tuple[bytes, list[bytes]]
    checkpoints: list[Checkpoint]
    streams: Mapping[str, StreamExtent]
    start: int
    prev: bytes
    end: int | None
    chunk: int


async def _in_parallel(conn: asyncpg.Connection, dsn: str, verifier: ChainVerifier, keyring: Keyring,
                       extents: Mapping[str, StreamExtent], lo: int, hi: int, count: int, chunk: int) -> Any:
    """Verify ``lo..hi`` in ``count`` segments: the first here, the rest in worker processes."""
    snapshot = await conn.fetchval("SELECT pg_export_snapshot()")
    bounds = [lo + (hi - lo + 1) * i // count for i in range(count)] + [hi + 1]
    jobs = []
    for i in range(1, count):
        start = bounds[i]
        prev = await conn.fetchval("SELECT hash FROM audit.records WHERE seq = $1", start - 1)
        jobs.append(_Job(dsn, snapshot, verifier.chain, keyring.material(), verifier.checkpoints, extents, start,
                         bytes(prev or b""), bounds[i + 1] - 1 if i + 1 < count else None, chunk))
    loop = asyncio.get_running_loop()
    with concurrent.futures.ProcessPoolExecutor(count - 1, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [loop.run_in_executor(pool, _run_job, job) for job in jobs]
        first = ChainVerifier(chain=verifier.chain, keyring=keyring, checkpoints=verifier.checkpoints,
                              streams=extents, validated=True, end=bounds[1] - 1)
        async for rows in repository.verify_rows(conn, chunk):
            first.feed(rows)
            if first.done:
                break
        segments = [first.summary(), *await asyncio.gather(*futures)]
    return merge_segments(segments, extents)


def _run_job(job: _Job) -> Segment:
    """Worker process entry point."""
    return asyncio.run(_verify_segment(job))


async def _verify_segment(job: _Job) -> Segment:
    conn = await asyncpg.connect(job.dsn, timeout=10)
    try:
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            await conn.execute(f"SET TRANSACTION SNAPSHOT '{job.snapshot}'")
            current, old = job.keys
            verifier = ChainVerifier(chain=job.chain, keyring=Keyring(current, old), checkpoints=job.checkpoints,
                                     streams=job.streams, validated=True, start=(job.start, job.prev), end=job.end)
            async for rows in repository.verify_rows(conn, job.chunk, after=job.start - 1):
                verifier.feed(rows)
                if verifier.done:
                    break
            return verifier.summary()
    finally:
        await conn.close()


def _single(problem: Problem) -> Report:
    return Report(False, problem, [problem], 0, 0, 0, 0, {})
