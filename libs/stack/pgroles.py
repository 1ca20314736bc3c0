"""PostgreSQL roles, one per service that uses the database, each owning only its own schema.

Run as the superuser by `stoker up` at every start, by compose's `db-init` and by the Kubernetes
`stoker-db-init` job (`python -m libs.stack.pgroles`): idempotent, and it sets each role's password
from the given secrets. The gateway owns ``gateway`` (accounts, tokens, sessions) and cannot see
``audit`` (it asks the audit service over NATS); the audit writer owns ``audit`` and cannot see ``gateway``. Nobody but the superuser has
CREATE on the database, and PUBLIC may not connect.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Mapping

import asyncpg

GATEWAY_ROLE, AUDIT_ROLE = "stoker_gateway", "stoker_audit"
AUDIT_APP_ROLE = "stoker_audit_app"  # made by the audit migrations too: the writer's restricted SET ROLE
SERVICE_ROLES = {"gateway": GATEWAY_ROLE, "audit": AUDIT_ROLE}  # service -> login role
SCHEMAS = {GATEWAY_ROLE: "gateway", AUDIT_ROLE: "audit"}  # login role -> the schema it owns
PASSWORD_ENV = {GATEWAY_ROLE: "STOKER_GATEWAY_DB_PASSWORD", AUDIT_ROLE: "STOKER_AUDIT_DB_PASSWORD"}

_OWN_OBJECTS = """
DO $$
DECLARE r record;
BEGIN
    FOR r IN SELECT c.relname, c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = '{schema}' AND c.relkind IN ('r', 'p', 'v', 'm', 'S')
               AND pg_get_userbyid(c.relowner) <> '{role}'
    LOOP
        EXECUTE format('ALTER %s {schema}.%I OWNER TO {role}',
                       CASE r.relkind WHEN 'S' THEN 'SEQUENCE' WHEN 'v' THEN 'VIEW'
                                      WHEN 'm' THEN 'MATERIALIZED VIEW' ELSE 'TABLE' END, r.relname);
    END LOOP;
    FOR r IN SELECT p.oid::regprocedure AS sig FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
             WHERE n.nspname = '{schema}' AND pg_get_userbyid(p.proowner) <> '{role}'
    LOOP
        EXECUTE format('ALTER FUNCTION %s OWNER TO {role}', r.sig);
    END LOOP;
END $$"""


def _create_role(role: str, login: bool) -> str:
    return (f"DO $$ BEGIN CREATE ROLE {role} {'LOGIN' if login else 'NOLOGIN'}; "
            "EXCEPTION WHEN duplicate_object THEN NULL; END $$")


def statements(database: str) -> list[str]:
    """The idempotent statements (passwords are set separately, never in a statement's text)."""
    out = [_create_role(role, True) for role in SCHEMAS] + [_create_role(AUDIT_APP_ROLE, False)]
    for role in SCHEMAS:
        out.append(f"ALTER ROLE {role} WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS")
    out += [
        f"REVOKE ALL ON DATABASE {database} FROM PUBLIC",
        f"GRANT CONNECT ON DATABASE {database} TO {', '.join(SCHEMAS)}",
        "REVOKE CREATE ON SCHEMA public FROM PUBLIC",
    ]
    for role, schema in SCHEMAS.items():
        out += [
            f"CREATE SCHEMA IF NOT EXISTS {schema} AUTHORIZATION {role}",
            f"ALTER SCHEMA {schema} OWNER TO {role}",
            _OWN_OBJECTS.format(schema=schema, role=role),
        ]
    out += [
        f"GRANT {AUDIT_APP_ROLE} TO {AUDIT_ROLE}",
        # The gateway reads the audit log only through the audit service: take back what older versions granted.
        f"ALTER DEFAULT PRIVILEGES FOR ROLE {AUDIT_ROLE} IN SCHEMA audit REVOKE ALL ON TABLES FROM {GATEWAY_ROLE}",
        f"REVOKE ALL ON ALL TABLES IN SCHEMA audit FROM {GATEWAY_ROLE}",
        f"REVOKE ALL ON SCHEMA audit FROM {GATEWAY_ROLE}",
    ]
    return out


async def bootstrap(conn: asyncpg.Connection, passwords: Mapping[str, str]) -> None:
    """Create or update the service roles and their schemas; ``passwords``: login role -> password."""
    database = await conn.fetchval("SELECT current_database()")
    if not database.replace("_", "").isalnum():
        raise ValueError(f"unsupported database name {database!r}")
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(7340021)")  # one bootstrap at a time
        for sql in statements(database):
            await conn.execute(sql)
        for role in SCHEMAS:
            password = passwords.get(role)
            if not password:
                raise ValueError(f"no password for PostgreSQL role {role}")
            # format(%L) quotes the password inside the server: it never appears in statement text we log.
            sql = await conn.fetchval("SELECT format('ALTER ROLE %I WITH PASSWORD %L', $1::text, $2::text)", role,
                                      password)
            await conn.execute(sql)


def render_init_script() -> str:
    """The same bootstrap as a shell script for the postgres image's /docker-entrypoint-initdb.d (first start).

    Passwords come from the container's environment (``PASSWORD_ENV``), passed to psql as variables.
    """
    sql = ";\n".join(statements("__DATABASE__")).replace("__DATABASE__", ':"dbname"') + ";\n"
    for role, name in PASSWORD_ENV.items():
        sql += f"ALTER ROLE {role} WITH PASSWORD :'{name.lower()}';\n"
    checks = "".join(f': "${{{name}:?set {name}}}"\n' for name in PASSWORD_ENV.values())
    variables = " ".join(f'-v {name.lower()}="${name}"' for name in PASSWORD_ENV.values())
    return (
        "#!/bin/sh\n"
        "# Generated from libs/stack/pgroles.py (tests/unit/test_deploy_*.py keep it in sync): one role per Stoker\n"
        "# service that uses PostgreSQL, each owning only its schema. Run by the postgres image on the first start\n"
        "# of an empty data volume; for an existing database run `python -m libs.stack.pgroles` (see deploy/README.md).\n"
        "set -eu\n"
        f"{checks}"
        f'psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "${{POSTGRES_DB:-$POSTGRES_USER}}" \\\n'
        f'    -v dbname="${{POSTGRES_DB:-$POSTGRES_USER}}" {variables} <<\'EOSQL\'\n'
        f"{sql}"
        "EOSQL\n"
    )


async def _main(env: Mapping[str, str]) -> int:
    dsn = env.get("DATABASE_URL")
    if not dsn:
        print("pgroles: DATABASE_URL (the superuser's DSN) is required", file=sys.stderr)
        return 2
    passwords = {role: env.get(name, "") for role, name in PASSWORD_ENV.items()}
    missing = [PASSWORD_ENV[role] for role, value in passwords.items() if not value]
    if missing:
        print(f"pgroles: set {', '.join(missing)}", file=sys.stderr)
        return 2
    for _ in range(60):  # the database may still be starting
        try:
            conn = await asyncpg.connect(dsn, timeout=10)
            break
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            print(f"pgroles: waiting for PostgreSQL ({type(exc).__name__})", file=sys.stderr)
            await asyncio.sleep(2)
    else:
        return 1
    try:
        await bootstrap(conn, passwords)
    finally:
        await conn.close()
    print("pgroles: roles " + ", ".join(SCHEMAS) + " ready")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(_main(os.environ)))
