"""All of the audit service's SQL: migrations, the chain's state, batched appends, queries, pruning."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, NamedTuple

import asyncpg

from libs.events import codec
from libs.sql.migrations import apply_migrations
from services.audit.chain import ZERO_HASH, from_us, to_us
from services.audit.domain import ROW_COLUMNS, Head, Row
from services.audit.verify import Checkpoint

log = logging.getLogger("stoker.audit")

MIGRATIONS = Path(__file__).with_name("migrations")
MIGRATION_LOCK = 0x5A0D17  # advisory lock key: one migrator at a time
COPY_COLUMNS = list(ROW_COLUMNS)
VERIFY_SELECT = (
    "SELECT seq, event_id, stream, stream_seq, subject, kind, type, aggregate_type, aggregate_id, actor, "
    "(extract(epoch FROM occurred_at) * 1000000)::bigint, (extract(epoch FROM recorded_at) * 1000000)::bigint, "
    "payload, key_id, prev_hash, hash, hmac FROM audit.records WHERE seq > $1 ORDER BY seq"
)
QUERY_COLUMNS = ("seq, event_id, stream, stream_seq, subject, kind, type, aggregate_type, aggregate_id, actor, "
                 "occurred_at, recorded_at, payload, key_id, hash")


class HeadMoved(Exception):
    """The chain head in the database is not the one this writer extended: reload and rebuild."""


class ChainState(NamedTuple):
    """What the database says: which chain, its head, and each stream's applied sequence."""

    chain: str
    head: Head
    cursors: dict[str, int]


async def migrate(conn: asyncpg.Connection) -> list[str]:
    """Apply migrations/*.sql not yet applied, in name order, in one transaction; return those applied."""
    return await apply_migrations(conn, schema="audit", directory=MIGRATIONS, lock_key=MIGRATION_LOCK, log=log)


async def set_role(conn: asyncpg.Connection, role: str) -> None:
    """Run the connection's statements as ``role`` (the restricted app role)."""
    await conn.execute(f"SET ROLE {_ident(role)}")


def _ident(name: str) -> str:
    if not name.replace("_", "").isalnum():
        raise ValueError(f"not a plain SQL identifier: {name!r}")
    return f'"{name}"'


async def create_pool(dsn: str, role: str | None, *, max_size: int = 3) -> asyncpg.Pool:
    """A pool whose every connection runs as ``role`` (None: as the DSN's user)."""
    async def init(conn: asyncpg.Connection) -> None:
        if role:
            await set_role(conn, role)

    pool: asyncpg.Pool = await asyncpg.create_pool(dsn, min_size=0, max_size=max_size, init=init, timeout=10,
                                                   command_timeout=60)
    return pool


async def load_state(conn: asyncpg.Connection) -> ChainState | None:
    """The chain's head and cursors, or None if no chain was created in this database yet."""
    row = await conn.fetchrow("SELECT chain, seq, hash, hmac, recorded_at FROM audit.head")
    if row is None:
        return None
    cursors = {r["stream"]: r["applied_seq"] for r in await conn.fetch("SELECT stream, applied_seq FROM audit.cursors")}
    head = Head(row["seq"], bytes(row["hash"]), bytes(row["hmac"]), to_us(row["recorded_at"]))
    return ChainState(row["chain"], head, cursors)


async def create_chain(owner: asyncpg.Connection, chain: str, origin: Checkpoint, now: datetime) -> bool:
    """Create the chain (head at 0, the signed origin, initial cursors) unless it exists; True if created."""
    async with owner.transaction():
        await owner.execute("LOCK TABLE audit.head IN EXCLUSIVE MODE")
        if await owner.fetchval("SELECT count(*) FROM audit.head"):
            return False
        await owner.execute("INSERT INTO audit.head (chain, seq, hash, hmac, recorded_at) VALUES ($1, 0, $2, '', $3)",
                            chain, ZERO_HASH, now)
        await _insert_checkpoint(owner, origin)
        await _save_cursors(owner, origin.cursors)
    return True


async def _insert_checkpoint(conn: asyncpg.Connection, cp: Checkpoint) -> None:
    await conn.execute(
        "INSERT INTO audit.checkpoints (seq, kind, hash, hmac, key_id, cursors, extra, signature) "
        "VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        cp.seq, cp.kind, cp.hash, cp.hmac, cp.key_id, codec.encode(dict(cp.cursors)).decode(), cp.extra,
        cp.signature)


async def _save_cursors(conn: asyncpg.Connection, cursors: Mapping[str, int]) -> None:
    if not cursors:
        return
    await conn.execute(
        "INSERT INTO audit.cursors (stream, applied_seq) SELECT * FROM unnest($1::text[], $2::bigint[]) "
        "ON CONFLICT (stream) DO UPDATE SET applied_seq = EXCLUDED.applied_seq",
        list(cursors), list(cursors.values()))


async def append(conn: asyncpg.Connection, rows: Sequence[Row], cursors: Mapping[str, int], expected: Head,
                 new: Head) -> None:
    """Insert chained rows (COPY) and the new cursors and head in one transaction.

    HeadMoved if the stored head is not ``expected`` (another writer, or rows removed).
    """
    async with conn.transaction():
        status = await conn.execute(
            "UPDATE audit.head SET seq = $1, hash = $2, hmac = $3, recorded_at = $4 WHERE seq = $5 AND hash = $6",
            new.seq, new.hash, new.hmac, from_us(new.recorded_us), expected.seq, expected.hash)
        if status != "UPDATE 1":
            raise HeadMoved(f"the stored head is not seq {expected.seq}")
        if rows:
            await conn.copy_records_to_table("records", schema_name="audit", columns=COPY_COLUMNS, records=rows)
        await _save_cursors(conn, cursors)


async def existing_event_ids(conn: asyncpg.Connection, event_ids: Sequence[str]) -> set[str]:
    """Which of these event ids already have a record."""
    rows = await conn.fetch("SELECT event_id FROM audit.records WHERE event_id = ANY($1::text[])", list(event_ids))
    return {r["event_id"] for r in rows}


async def checkpoints(conn: asyncpg.Connection) -> list[Checkpoint]:
    """The origin and prune checkpoints stored in the database."""
    rows = await conn.fetch("SELECT seq, kind, hash, hmac, key_id, cursors, extra, signature FROM audit.checkpoints "
                            "ORDER BY seq")
    return [Checkpoint(r["kind"], r["seq"], bytes(r["hash"]), bytes(r["hmac"]), r["key_id"], codec.loads(r["cursors"]),
                       r["extra"], r["signature"], "db") for r in rows]


async def verify_rows(conn: asyncpg.Connection, chunk: int = 20_000, after: int = 0) -> AsyncIterator[list[Any]]:
    """Records after seq ``after`` in sequence order, in chunks, times as microseconds (inside a transaction)."""
    cursor = await conn.cursor(VERIFY_SELECT, after)
    while True:
        rows = await cursor.fetch(chunk)
        if not rows:
            return
        yield rows


class Query(NamedTuple):
    """Filters for a page of records; pages go by ``after`` (ascending) or ``before`` (descending)."""

    since: datetime | None = None
    until: datetime | None = None
    actor: str | None = None
    type: str | None = None
    aggregate_type: str | None = None
    aggregate_id: str | None = None
    after: int | None = None
    before: int | None = None
    limit: int = 100
    descending: bool = False


async def query(conn: asyncpg.Connection, q: Query) -> list[asyncpg.Record]:
    """One page of records matching the filters, in sequence order (keyset pagination on seq)."""
    where, args = [], []

    def arg(value: Any) -> str:
        args.append(value)
        return f"${len(args)}"

    if q.since is not None:
        where.append(f"occurred_at >= {arg(q.since)}")
    if q.until is not None:
        where.append(f"occurred_at < {arg(q.until)}")
    for column in ("actor", "type", "aggregate_type", "aggregate_id"):
        value = getattr(q, column)
        if value is not None:
            where.append(f"{column} = {arg(value)}")
    if q.after is not None:
        where.append(f"seq > {arg(q.after)}")
    if q.before is not None:
        where.append(f"seq < {arg(q.before)}")
    order = "DESC" if q.descending else "ASC"
    sql = (f"SELECT {QUERY_COLUMNS} FROM audit.records"
           + (f" WHERE {' AND '.join(where)}" if where else "")
           + f" ORDER BY seq {order} LIMIT {arg(max(1, min(q.limit, 1000)))}")
    return list(await conn.fetch(sql, *args))


class PrunePlan(NamedTuple):
    """The prefix retention would remove: through ``seq``, whose record has ``hash``/``hmac``."""

    seq: int
    hash: bytes
    hmac: bytes
    cursors: dict[str, int]
    records: int


async def prune_plan(conn: asyncpg.Connection, cutoff: datetime) -> PrunePlan | None:
    """Records recorded before ``cutoff`` (a prefix: recorded_at never decreases along the chain)."""
    through = await conn.fetchval("SELECT max(seq) FROM audit.records WHERE recorded_at < $1", cutoff)
    if through is None:
        return None
    row = await conn.fetchrow("SELECT hash, hmac FROM audit.records WHERE seq = $1", through)
    first = await conn.fetchval("SELECT min(seq) FROM audit.records")
    cursors: dict[str, int] = {}
    for cp in await checkpoints(conn):
        if cp.kind in ("origin", "prune"):
            cursors.update(cp.cursors)
    for r in await conn.fetch("SELECT stream, max(stream_seq) AS s FROM audit.records WHERE seq <= $1 GROUP BY stream",
                              through):
        cursors[r["stream"]] = max(cursors.get(r["stream"], 0), r["s"])
    return PrunePlan(through, bytes(row["hash"]), bytes(row["hmac"]), cursors, through - first + 1)


async def prune(owner: asyncpg.Connection, cp: Checkpoint) -> int:
    """Delete records up to the checkpoint and store it, atomically (privileged: audit.prune)."""
    deleted: int = await owner.fetchval(
        "SELECT audit.prune($1, $2, $3, $4, $5, $6, $7)", cp.seq, cp.hash, cp.hmac, cp.key_id,
        codec.encode(dict(cp.cursors)).decode(), cp.extra, cp.signature)
    return deleted
