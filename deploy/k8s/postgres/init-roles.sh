#!/bin/sh
# Generated from libs/stack/pgroles.py (tests/unit/test_deploy_*.py keep it in sync): one role per Stoker
# service that uses PostgreSQL, each owning only its schema. Run by the postgres image on the first start
# of an empty data volume; for an existing database run `python -m libs.stack.pgroles` (see deploy/README.md).
set -eu
: "${STOKER_GATEWAY_DB_PASSWORD:?set STOKER_GATEWAY_DB_PASSWORD}"
: "${STOKER_AUDIT_DB_PASSWORD:?set STOKER_AUDIT_DB_PASSWORD}"
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "${POSTGRES_DB:-$POSTGRES_USER}" \
    -v dbname="${POSTGRES_DB:-$POSTGRES_USER}" -v stoker_gateway_db_password="$STOKER_GATEWAY_DB_PASSWORD" -v stoker_audit_db_password="$STOKER_AUDIT_DB_PASSWORD" <<'EOSQL'
DO $$ BEGIN CREATE ROLE stoker_gateway LOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$;
DO $$ BEGIN CREATE ROLE stoker_audit LOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$;
DO $$ BEGIN CREATE ROLE stoker_audit_app NOLOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$;
ALTER ROLE stoker_gateway WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS;
ALTER ROLE stoker_audit WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS;
REVOKE ALL ON DATABASE :"dbname" FROM PUBLIC;
GRANT CONNECT ON DATABASE :"dbname" TO stoker_gateway, stoker_audit;
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
CREATE SCHEMA IF NOT EXISTS gateway AUTHORIZATION stoker_gateway;
ALTER SCHEMA gateway OWNER TO stoker_gateway;

DO $$
DECLARE r record;
BEGIN
    FOR r IN SELECT c.relname, c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = 'gateway' AND c.relkind IN ('r', 'p', 'v', 'm', 'S')
               AND pg_get_userbyid(c.relowner) <> 'stoker_gateway'
    LOOP
        EXECUTE format('ALTER %s gateway.%I OWNER TO stoker_gateway',
                       CASE r.relkind WHEN 'S' THEN 'SEQUENCE' WHEN 'v' THEN 'VIEW'
                                      WHEN 'm' THEN 'MATERIALIZED VIEW' ELSE 'TABLE' END, r.relname);
    END LOOP;
    FOR r IN SELECT p.oid::regprocedure AS sig FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
             WHERE n.nspname = 'gateway' AND pg_get_userbyid(p.proowner) <> 'stoker_gateway'
    LOOP
        EXECUTE format('ALTER FUNCTION %s OWNER TO stoker_gateway', r.sig);
    END LOOP;
END $$;
CREATE SCHEMA IF NOT EXISTS audit AUTHORIZATION stoker_audit;
ALTER SCHEMA audit OWNER TO stoker_audit;

DO $$
DECLARE r record;
BEGIN
    FOR r IN SELECT c.relname, c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = 'audit' AND c.relkind IN ('r', 'p', 'v', 'm', 'S')
               AND pg_get_userbyid(c.relowner) <> 'stoker_audit'
    LOOP
        EXECUTE format('ALTER %s audit.%I OWNER TO stoker_audit',
                       CASE r.relkind WHEN 'S' THEN 'SEQUENCE' WHEN 'v' THEN 'VIEW'
                                      WHEN 'm' THEN 'MATERIALIZED VIEW' ELSE 'TABLE' END, r.relname);
    END LOOP;
    FOR r IN SELECT p.oid::regprocedure AS sig FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
             WHERE n.nspname = 'audit' AND pg_get_userbyid(p.proowner) <> 'stoker_audit'
    LOOP
        EXECUTE format('ALTER FUNCTION %s OWNER TO stoker_audit', r.sig);
    END LOOP;
END $$;
GRANT stoker_audit_app TO stoker_audit;
ALTER DEFAULT PRIVILEGES FOR ROLE stoker_audit IN SCHEMA audit REVOKE ALL ON TABLES FROM stoker_gateway;
REVOKE ALL ON ALL TABLES IN SCHEMA audit FROM stoker_gateway;
REVOKE ALL ON SCHEMA audit FROM stoker_gateway;
ALTER ROLE stoker_gateway WITH PASSWORD :'stoker_gateway_db_password';
ALTER ROLE stoker_audit WITH PASSWORD :'stoker_audit_db_password';
EOSQL
