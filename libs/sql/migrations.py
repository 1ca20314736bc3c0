"""Schema migrations kept as numbered .sql files beside a service, applied once each, at start."""

from __future__ import annotations

import logging
from pathlib import Path

import asyncpg


async def apply_migrations(conn: asyncpg.Connection, *, schema: str, directory: Path, lock_key: int,
                           log: logging.Logger) -> list[str]:
    """Apply ``directory/*.sql`` not yet recorded in ``<schema>.schema_migrations``, in name order.

    One transaction under an advisory lock, so concurrent starters apply each file exactly once.
    Returns the versions applied now.
    """
    if not schema.replace("_", "").isalnum():
        raise ValueError(f"not a plain SQL identifier: {schema!r}")
    applied: list[str] = []
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", lock_key)
        # A service role owns its schema (made by libs/stack/pgroles.py) without CREATE on the database,
        # which CREATE SCHEMA IF NOT EXISTS would need even when the schema exists.
        if not await conn.fetchval("SELECT 1 FROM pg_namespace WHERE nspname = $1", schema):
            await conn.execute(f"CREATE SCHEMA {schema}")
        await conn.execute(f"CREATE TABLE IF NOT EXISTS {schema}.schema_migrations "
                           "(version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())")
        done = {r["version"] for r in await conn.fetch(f"SELECT version FROM {schema}.schema_migrations")}
        for path in sorted(directory.glob("*.sql")):
            if path.stem in done:
                continue
            await conn.execute(path.read_text())
            await conn.execute(f"INSERT INTO {schema}.schema_migrations (version) VALUES ($1)", path.stem)
            applied.append(path.stem)
    for version in applied:
        log.info("%s migration %s applied", schema, version)
    return applied
