-- Access control: users, API tokens, browser sessions, login attempts (for lockout) and the audit log.
-- Every time here is in Unix microseconds (the `_us` columns). No secret is stored in clear: passwords are
-- argon2id PHC strings, token and session secrets are stored as the sha256 (hex) of the secret.
CREATE TABLE users (
    id            INTEGER PRIMARY KEY,
    username      TEXT    NOT NULL UNIQUE,
    password_hash TEXT    NOT NULL,
    role          TEXT    NOT NULL,
    disabled      INTEGER NOT NULL DEFAULT 0,
    created_at_us INTEGER NOT NULL,
    updated_at_us INTEGER NOT NULL
);

-- API tokens. A user's token has an owner; a service token has none. Deleting a user revokes its tokens
-- first; the rows stay (with the owner's name) so that the token list still says whose they were.
CREATE TABLE api_tokens (
    id              INTEGER PRIMARY KEY,
    name            TEXT    NOT NULL,
    owner_id        INTEGER REFERENCES users (id) ON DELETE SET NULL,
    owner_name      TEXT,
    role            TEXT    NOT NULL,
    secret_hash     TEXT    NOT NULL UNIQUE,
    prefix          TEXT    NOT NULL,
    created_by      TEXT    NOT NULL,
    created_at_us   INTEGER NOT NULL,
    expires_at_us   INTEGER,
    last_used_at_us INTEGER,
    revoked_at_us   INTEGER
);
CREATE INDEX api_tokens_by_owner ON api_tokens (owner_id);

-- Browser sessions, keyed by the sha256 of the cookie's secret.
CREATE TABLE sessions (
    id_hash         TEXT    PRIMARY KEY,
    user_id         INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    csrf_token      TEXT    NOT NULL,
    created_at_us   INTEGER NOT NULL,
    last_seen_at_us INTEGER NOT NULL,
    expires_at_us   INTEGER NOT NULL
);
CREATE INDEX sessions_by_user ON sessions (user_id);

-- Every password check, for lockout by username and by source address. Kept only as long as lockout needs.
CREATE TABLE login_attempts (
    id       INTEGER PRIMARY KEY,
    at_us    INTEGER NOT NULL,
    username TEXT    NOT NULL,
    source   TEXT    NOT NULL,
    success  INTEGER NOT NULL
);
CREATE INDEX login_attempts_by_username ON login_attempts (username, at_us);
CREATE INDEX login_attempts_by_source ON login_attempts (source, at_us);

-- The audit log: append-only. Rows are only ever inserted, and deleted by retention.
CREATE TABLE audit_log (
    id         INTEGER PRIMARY KEY,
    at_us      INTEGER NOT NULL,
    actor_kind TEXT    NOT NULL CHECK (actor_kind IN ('user', 'token', 'system', 'anonymous')),
    actor      TEXT    NOT NULL,
    role       TEXT,
    action     TEXT    NOT NULL,
    target     TEXT    NOT NULL,
    source     TEXT,
    result     TEXT    NOT NULL CHECK (result IN ('ok', 'denied', 'failed')),
    detail     TEXT
);
CREATE INDEX audit_log_by_time ON audit_log (at_us);

CREATE TRIGGER audit_log_append_only BEFORE UPDATE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'the audit log is append-only');
END;
