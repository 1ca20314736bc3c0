"""Embedded PostgreSQL recovers from a crashed run: a dead postmaster's pid file, or an orphaned postmaster."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import asyncpg

from libs.stack.postgres import EmbeddedPostgres


async def _select_one(dsn: str) -> int:
    conn = await asyncpg.connect(dsn, timeout=5)
    try:
        return int(await conn.fetchval("SELECT 1"))
    finally:
        await conn.close()


async def test_start_after_the_postmaster_was_killed(tmp_path: Path) -> None:
    first = EmbeddedPostgres(tmp_path / "pg")
    await first.start()
    assert first.pid is not None
    os.kill(first.pid, signal.SIGKILL)
    await first.stop()  # reaps the dead child; postmaster.pid stays behind, as after a crash
    assert (tmp_path / "pg" / "postmaster.pid").exists()

    second = EmbeddedPostgres(tmp_path / "pg")
    await second.start()
    try:
        assert await _select_one(second.url) == 1
    finally:
        await second.stop()


async def test_start_stops_an_orphaned_postmaster_of_the_same_data_dir(tmp_path: Path) -> None:
    orphan = EmbeddedPostgres(tmp_path / "pg")  # as if the `stoker up` that started it had died
    await orphan.start()
    fresh = EmbeddedPostgres(tmp_path / "pg")
    await fresh.start()
    try:
        assert not orphan.running
        assert await _select_one(fresh.url) == 1
    finally:
        await fresh.stop()
        await orphan.stop()
