-- Sign-ins refused during a lockout are counted on one audit row per lockout instead of one row each, so
-- that anonymous callers cannot grow the audit log without limit. The log stays append-only except for that
-- count, which can only grow.
ALTER TABLE audit_log ADD COLUMN count INTEGER NOT NULL DEFAULT 1;

DROP TRIGGER audit_log_append_only;
CREATE TRIGGER audit_log_append_only
BEFORE UPDATE OF id, at_us, actor_kind, actor, role, action, target, source, result, detail ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'the audit log is append-only');
END;
CREATE TRIGGER audit_log_count_only_grows BEFORE UPDATE OF count ON audit_log
WHEN NEW.count < OLD.count
BEGIN
    SELECT RAISE(ABORT, 'an audit entry''s count only grows');
END;

-- One row per lockout (of a username or of an address, from the failure that started it): the audit entry
-- that counts the attempts it refused. Kept only as long as lockout needs, like login_attempts.
CREATE TABLE lockouts (
    key_kind      TEXT    NOT NULL CHECK (key_kind IN ('username', 'source')),
    key           TEXT    NOT NULL,
    started_at_us INTEGER NOT NULL,
    audit_id      INTEGER NOT NULL,
    PRIMARY KEY (key_kind, key, started_at_us)
);
