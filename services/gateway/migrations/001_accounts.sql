-- Gateway-owned credentials: accounts with scrypt password hashes, API tokens and sessions by digest.
-- Applied by services.gateway.repository.migrate (one transaction, under an advisory lock).

CREATE TABLE gateway.users (
    id            text PRIMARY KEY,
    username      text NOT NULL UNIQUE,
    password_hash text NOT NULL,                    -- scrypt$n$r$p$salt$digest, never the password
    role          text NOT NULL CHECK (role IN ('user', 'admin')),
    created_at    timestamptz NOT NULL DEFAULT now(),
    disabled      boolean NOT NULL DEFAULT false
);

-- Bearer credentials: API tokens (kind 'api') and sign-in sessions (kind 'session').
-- Only the SHA-256 of a token is kept; the token itself is shown once, at creation.
CREATE TABLE gateway.tokens (
    id           text PRIMARY KEY,
    user_id      text NOT NULL REFERENCES gateway.users (id),
    kind         text NOT NULL CHECK (kind IN ('api', 'session')),
    name         text NOT NULL DEFAULT '',
    digest       bytea NOT NULL UNIQUE,
    fingerprint  text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz,
    last_used_at timestamptz,
    revoked_at   timestamptz
);
CREATE INDEX tokens_user ON gateway.tokens (user_id, kind, created_at);
