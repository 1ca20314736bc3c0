"""Helpers for tests and benchmarks: throwaway databases and test configurations."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from services.audit.config import AuditConfig


def with_database(dsn: str, name: str) -> str:
    """The same DSN pointing at database ``name``."""
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(path=f"/{name}"))


async def fresh_database(admin_dsn: str, prefix: str = "audit", template: str | None = None) -> str:
    """Create a new database (optionally a copy of ``template``) and return its DSN."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    conn = await asyncpg.connect(admin_dsn, timeout=10)
    try:
        copy = f' TEMPLATE "{template}"' if template else ""
        await conn.execute(f'CREATE DATABASE "{name}"{copy}')
    finally:
        await conn.close()
    return with_database(admin_dsn, name)


def database_name(dsn: str) -> str:
    """The database a DSN points at."""
    return urlsplit(dsn).path.lstrip("/")


def test_config(nats_url: str, database_url: str, **overrides: str) -> AuditConfig:
    """A config with a unique chain and durable, auditing only events published from now on."""
    token = uuid.uuid4().hex[:10]
    env: Mapping[str, str] = {
        "NATS_URL": nats_url,
        "DATABASE_URL": database_url,
        "AUDIT_HMAC_KEY": "test-audit-key-" + token,
        "AUDIT_CHAIN": f"t{token}",
        "AUDIT_DURABLE": f"audit-t{token}",
        "AUDIT_START": "new",
        "AUDIT_ANCHOR_SECONDS": "1",
        "AUDIT_BATCH": "200",
        "AUDIT_PRUNE_INTERVAL_S": "3600",
        **overrides,
    }
    return AuditConfig.from_mapping(env)


test_config.__test__ = False  # type: ignore[attr-defined]  # not a pytest test
