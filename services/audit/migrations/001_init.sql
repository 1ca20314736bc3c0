-- The audit chain: append-only records, stream cursors, the chain head and signed checkpoints.
-- Applied by services.audit.repository.migrate (inside one transaction, under an advisory lock).

CREATE TABLE audit.records (
    seq            bigint PRIMARY KEY,            -- global audit sequence: gap-free, chain order
    event_id       text NOT NULL UNIQUE,
    stream         text NOT NULL,
    stream_seq     bigint NOT NULL,
    subject        text NOT NULL,
    kind           text NOT NULL,                 -- event | unreadable | duplicate
    type           text NOT NULL,
    aggregate_type text NOT NULL,
    aggregate_id   text NOT NULL,
    actor          text NOT NULL,
    occurred_at    timestamptz NOT NULL,
    recorded_at    timestamptz NOT NULL,          -- never decreases along the chain
    payload        text NOT NULL,                 -- the exact canonical JSON the hash covers
    key_id         text NOT NULL,
    prev_hash      bytea NOT NULL,
    hash           bytea NOT NULL,
    hmac           bytea NOT NULL
);
CREATE INDEX records_actor ON audit.records (actor, seq);
CREATE INDEX records_type ON audit.records (type, seq);
CREATE INDEX records_aggregate ON audit.records (aggregate_type, aggregate_id, seq);
CREATE INDEX records_occurred ON audit.records (occurred_at, seq);
CREATE INDEX records_recorded ON audit.records USING brin (recorded_at);

-- The last stream sequence applied per stream, written in the same transaction as the records.
CREATE TABLE audit.cursors (
    stream      text PRIMARY KEY,
    applied_seq bigint NOT NULL
);

-- One row: which chain this database holds and its head (updated with each batch).
CREATE TABLE audit.head (
    one   boolean PRIMARY KEY DEFAULT true CHECK (one),
    chain text NOT NULL,
    seq   bigint NOT NULL,
    hash  bytea NOT NULL,
    hmac  bytea NOT NULL,
    recorded_at timestamptz NOT NULL
);

-- Signed checkpoints: the chain's origin (seq 0, the stream positions it starts after) and prunes.
CREATE TABLE audit.checkpoints (
    seq        bigint PRIMARY KEY,
    kind       text NOT NULL,                     -- origin | prune
    hash       bytea NOT NULL,
    hmac       bytea NOT NULL,
    key_id     text NOT NULL,
    cursors    text NOT NULL,                     -- JSON object: stream -> stream sequence
    extra      text NOT NULL,
    signature  text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- Audit rows change only by retention pruning, through audit.prune().
CREATE FUNCTION audit.forbid_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' AND current_setting('stoker.audit_pruning', true) = 'on' THEN
        RETURN NULL;
    END IF;
    RAISE EXCEPTION 'audit records are append-only: % refused', TG_OP USING ERRCODE = 'insufficient_privilege';
END $$;
CREATE TRIGGER records_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON audit.records
    FOR EACH STATEMENT EXECUTE FUNCTION audit.forbid_change();
CREATE TRIGGER checkpoints_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON audit.checkpoints
    FOR EACH STATEMENT EXECUTE FUNCTION audit.forbid_change();

-- The privileged pruning path: a prefix only, ending at a record the checkpoint matches.
CREATE FUNCTION audit.prune(p_seq bigint, p_hash bytea, p_hmac bytea, p_key_id text, p_cursors text,
                            p_extra text, p_signature text) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, audit AS $$
DECLARE
    found_hash bytea;
    deleted bigint;
BEGIN
    SELECT r.hash INTO found_hash FROM audit.records r WHERE r.seq = p_seq;
    IF found_hash IS DISTINCT FROM p_hash THEN
        RAISE EXCEPTION 'prune checkpoint does not match record %', p_seq;
    END IF;
    INSERT INTO audit.checkpoints (seq, kind, hash, hmac, key_id, cursors, extra, signature)
    VALUES (p_seq, 'prune', p_hash, p_hmac, p_key_id, p_cursors, p_extra, p_signature);
    PERFORM set_config('stoker.audit_pruning', 'on', true);
    DELETE FROM audit.records WHERE seq <= p_seq;
    GET DIAGNOSTICS deleted = ROW_COUNT;
    PERFORM set_config('stoker.audit_pruning', 'off', true);
    RETURN deleted;
END $$;
REVOKE ALL ON FUNCTION audit.prune(bigint, bytea, bytea, text, text, text, text) FROM PUBLIC;

-- The service's role: it may append and read audit rows, never change or remove them.
DO $$
BEGIN
    CREATE ROLE stoker_audit_app NOLOGIN;
EXCEPTION WHEN duplicate_object OR unique_violation OR insufficient_privilege THEN
    NULL;  -- roles are cluster-wide: another database's migration made it, or (a migrating user
           -- without CREATEROLE) the deployment did: libs/stack/pgroles.py
END $$;
DO $$
BEGIN
    -- Let the migrating (owner) user SET ROLE to it; superusers may already.
    EXECUTE format('GRANT stoker_audit_app TO %I', current_user);
EXCEPTION WHEN insufficient_privilege OR invalid_grant_operation THEN
    NULL;
END $$;
GRANT USAGE ON SCHEMA audit TO stoker_audit_app;
GRANT SELECT, INSERT ON audit.records TO stoker_audit_app;
GRANT SELECT, INSERT, UPDATE ON audit.cursors, audit.head TO stoker_audit_app;
GRANT SELECT ON audit.checkpoints TO stoker_audit_app;
GRANT SELECT ON audit.schema_migrations TO stoker_audit_app;
