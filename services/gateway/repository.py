"""All of the gateway's SQL: migrations, accounts, API tokens and sessions (stored by digest only)."""

from __future__ import annotations

import logging
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg

from libs.sql.migrations import apply_migrations

log = logging.getLogger("stoker.gateway")

MIGRATIONS = Path(__file__).with_name("migrations")
MIGRATION_LOCK = 0x6A7E3A  # advisory lock key: one migrator at a time
TOKEN_COLUMNS = "t.id, t.user_id, t.kind, t.name, t.fingerprint, t.created_at, t.expires_at, t.last_used_at"
USER_COLUMNS = "u.id, u.username, u.role, u.created_at"
TOUCH_EVERY = "60 seconds"  # last_used_at is a hint: write it at most once a minute per token


class UsernameTaken(Exception):
    """Another account already has this username."""


async def migrate(conn: asyncpg.Connection) -> list[str]:
    """Apply migrations/*.sql not yet applied, in name order, in one transaction; return those applied."""
    return await apply_migrations(conn, schema="gateway", directory=MIGRATIONS, lock_key=MIGRATION_LOCK, log=log)


async def insert_user(conn: asyncpg.Connection, user_id: str, username: str, password_hash: str,
                      role: str, now: datetime) -> asyncpg.Record:
    """Create an account; UsernameTaken if the name is in use."""
    try:
        row = await conn.fetchrow(
            "INSERT INTO gateway.users AS u (id, username, password_hash, role, created_at) "
            f"VALUES ($1, $2, $3, $4, $5) RETURNING {USER_COLUMNS}", user_id, username, password_hash, role, now)
    except asyncpg.UniqueViolationError:
        raise UsernameTaken(username) from None
    assert row is not None
    return row


async def user_for_login(conn: asyncpg.Connection, username: str) -> asyncpg.Record | None:
    """An enabled account by username, with its password hash."""
    return await conn.fetchrow(f"SELECT {USER_COLUMNS}, u.password_hash FROM gateway.users u "
                               "WHERE u.username = $1 AND NOT u.disabled", username)


async def user_by_id(conn: asyncpg.Connection, user_id: str, *, lock: bool = False) -> asyncpg.Record | None:
    """An account by id (without its password hash); ``lock``: hold its row until the transaction ends."""
    return await conn.fetchrow(f"SELECT {USER_COLUMNS} FROM gateway.users u WHERE u.id = $1"
                               + (" FOR UPDATE" if lock else ""), user_id)


async def replace_password_hash(conn: asyncpg.Connection, user_id: str, old: str, new: str) -> bool:
    """Swap a password hash for a stronger one of the same password, unless it changed meanwhile."""
    done = await conn.execute("UPDATE gateway.users SET password_hash = $3 WHERE id = $1 AND password_hash = $2",
                              user_id, old, new)
    return bool(done.endswith(" 1"))


async def count_live_tokens(conn: asyncpg.Connection, user_id: str, now: datetime) -> int:
    """How many API tokens of an account are live (not revoked, not expired)."""
    count = await conn.fetchval("SELECT count(*) FROM gateway.tokens WHERE user_id = $1 AND kind = 'api' "
                                "AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > $2)", user_id, now)
    return int(count or 0)


async def insert_token(conn: asyncpg.Connection, *, token_id: str, user_id: str, kind: str, name: str,
                       digest: bytes, fingerprint: str, now: datetime, expires_at: datetime | None) -> asyncpg.Record:
    """Store a token by its digest; return its public columns."""
    row = await conn.fetchrow(
        "INSERT INTO gateway.tokens AS t (id, user_id, kind, name, digest, fingerprint, created_at, expires_at) "
        f"VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING {TOKEN_COLUMNS}",
        token_id, user_id, kind, name, digest, fingerprint, now, expires_at)
    assert row is not None
    return row


async def bearer(conn: asyncpg.Connection, digest: bytes, now: datetime) -> asyncpg.Record | None:
    """The live token with this digest and its enabled account, or None; marks it used (at most once a minute)."""
    row = await conn.fetchrow(
        f"SELECT {TOKEN_COLUMNS}, u.username, u.role, u.created_at AS user_created_at "
        "FROM gateway.tokens t JOIN gateway.users u ON u.id = t.user_id "
        "WHERE t.digest = $1 AND t.revoked_at IS NULL AND (t.expires_at IS NULL OR t.expires_at > $2) "
        "AND NOT u.disabled", digest, now)
    if row is not None and (row["last_used_at"] is None or (now - row["last_used_at"]).total_seconds() > 60):
        await conn.execute("UPDATE gateway.tokens SET last_used_at = $2 WHERE id = $1", row["id"], now)
    return row


async def list_tokens(conn: asyncpg.Connection, user_id: str | None) -> list[asyncpg.Record]:
    """Live API tokens of one account (or of every account), newest first."""
    where = "t.kind = 'api' AND t.revoked_at IS NULL"
    args: list[Any] = []
    if user_id is not None:
        where += " AND t.user_id = $1"
        args.append(user_id)
    return list(await conn.fetch(f"SELECT {TOKEN_COLUMNS} FROM gateway.tokens t WHERE {where} "
                                 "ORDER BY t.created_at DESC, t.id DESC LIMIT 1000", *args))


async def revoke_token(conn: asyncpg.Connection, token_id: str, user_id: str | None,
                       now: datetime) -> asyncpg.Record | None:
    """Revoke a live API token (of ``user_id`` unless None); the revoked row, or None if no such token."""
    where = "id = $1 AND kind = 'api' AND revoked_at IS NULL"
    args: list[Any] = [token_id, now]
    if user_id is not None:
        where += " AND user_id = $3"
        args.append(user_id)
    return await conn.fetchrow(f"UPDATE gateway.tokens t SET revoked_at = $2 WHERE {where} RETURNING {TOKEN_COLUMNS}",
                               *args)


async def revoke_session(conn: asyncpg.Connection, digest: bytes, now: datetime) -> asyncpg.Record | None:
    """End the session with this digest; the row, or None if it was not live."""
    return await conn.fetchrow(
        "UPDATE gateway.tokens t SET revoked_at = $2 WHERE digest = $1 AND kind = 'session' AND revoked_at IS NULL "
        f"RETURNING {TOKEN_COLUMNS}", digest, now)


# --- account administration -----------------------------------------------------------------
ACCOUNT_COLUMNS = "u.id, u.username, u.role, u.created_at, u.disabled"


async def list_users(conn: asyncpg.Connection, now: datetime) -> list[asyncpg.Record]:
    """Every account with its number of live sessions and API tokens, by username."""
    return list(await conn.fetch(
        f"SELECT {ACCOUNT_COLUMNS}, "
        "count(t.id) FILTER (WHERE t.kind = 'session') AS sessions, "
        "count(t.id) FILTER (WHERE t.kind = 'api') AS tokens "
        "FROM gateway.users u LEFT JOIN gateway.tokens t ON t.user_id = u.id AND t.revoked_at IS NULL "
        "AND (t.expires_at IS NULL OR t.expires_at > $1) GROUP BY u.id ORDER BY u.username LIMIT 10000", now))


async def account_by_id(conn: asyncpg.Connection, user_id: str) -> asyncpg.Record | None:
    """An account by id with its disabled flag and password hash (for a password check)."""
    return await conn.fetchrow(f"SELECT {ACCOUNT_COLUMNS}, u.password_hash FROM gateway.users u WHERE u.id = $1",
                               user_id)


async def user_id_by_name(conn: asyncpg.Connection, username: str) -> str | None:
    """The id of the account called ``username``, or None."""
    value = await conn.fetchval("SELECT id FROM gateway.users WHERE username = $1", username)
    return str(value) if value is not None else None


async def set_disabled(conn: asyncpg.Connection, user_id: str, disabled: bool) -> asyncpg.Record | None:
    """Disable or enable an account; the row, or None if there is no such account."""
    return await conn.fetchrow(f"UPDATE gateway.users u SET disabled = $2 WHERE u.id = $1 RETURNING {ACCOUNT_COLUMNS}",
                               user_id, disabled)


async def set_password(conn: asyncpg.Connection, user_id: str, password_hash: str) -> asyncpg.Record | None:
    """Store a new password hash; the row, or None if there is no such account."""
    return await conn.fetchrow(
        f"UPDATE gateway.users u SET password_hash = $2 WHERE u.id = $1 RETURNING {ACCOUNT_COLUMNS}",
        user_id, password_hash)


async def delete_user(conn: asyncpg.Connection, user_id: str) -> asyncpg.Record | None:
    """Delete an account with its tokens and sessions; the deleted row, or None."""
    await conn.execute("DELETE FROM gateway.tokens WHERE user_id = $1", user_id)
    return await conn.fetchrow(f"DELETE FROM gateway.users u WHERE u.id = $1 RETURNING {ACCOUNT_COLUMNS}", user_id)


async def list_sessions(conn: asyncpg.Connection, user_id: str | None, now: datetime) -> list[asyncpg.Record]:
    """Live sign-in sessions of one account (or of every account), newest first."""
    where = "t.kind = 'session' AND t.revoked_at IS NULL AND (t.expires_at IS NULL OR t.expires_at > $1)"
    args: list[Any] = [now]
    if user_id is not None:
        where += " AND t.user_id = $2"
        args.append(user_id)
    return list(await conn.fetch(f"SELECT {TOKEN_COLUMNS}, u.username FROM gateway.tokens t "
                                 f"JOIN gateway.users u ON u.id = t.user_id WHERE {where} "
                                 "ORDER BY t.created_at DESC, t.id DESC LIMIT 1000", *args))


async def revoke_session_id(conn: asyncpg.Connection, session_id: str, user_id: str | None,
                            now: datetime) -> asyncpg.Record | None:
    """End a live session by id (of ``user_id`` unless None); the row, or None if there is none."""
    where = "id = $1 AND kind = 'session' AND revoked_at IS NULL"
    args: list[Any] = [session_id, now]
    if user_id is not None:
        where += " AND user_id = $3"
        args.append(user_id)
    return await conn.fetchrow(f"UPDATE gateway.tokens t SET revoked_at = $2 WHERE {where} RETURNING {TOKEN_COLUMNS}",
                               *args)


async def revoke_sessions_of(conn: asyncpg.Connection, user_id: str, now: datetime,
                             keep: str | None = None) -> list[str]:
    """End every live session of an account (but ``keep``); the ids ended."""
    rows = await conn.fetch("UPDATE gateway.tokens SET revoked_at = $2 WHERE user_id = $1 AND kind = 'session' "
                            "AND revoked_at IS NULL AND id IS DISTINCT FROM $3 RETURNING id", user_id, now, keep)
    return [r["id"] for r in rows]
