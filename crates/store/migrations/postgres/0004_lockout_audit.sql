-- PostgreSQL's version of sqlite/0004_lockout_audit.sql: sign-ins refused during a lockout are counted on
-- one audit row per lockout; the log stays append-only except for that count, which can only grow.
ALTER TABLE audit_log ADD COLUMN count BIGINT NOT NULL DEFAULT 1;

DROP TRIGGER audit_log_append_only ON audit_log;
CREATE TRIGGER audit_log_append_only
BEFORE UPDATE OF id, at_us, actor_kind, actor, role, action, target, source, result, detail ON audit_log
FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();

CREATE FUNCTION audit_log_count_only_grows() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'an audit entry''s count only grows';
END;
$$;
CREATE TRIGGER audit_log_count_only_grows BEFORE UPDATE OF count ON audit_log
FOR EACH ROW WHEN (NEW.count < OLD.count) EXECUTE FUNCTION audit_log_count_only_grows();

CREATE TABLE lockouts (
    key_kind      TEXT   NOT NULL CHECK (key_kind IN ('username', 'source')),
    key           TEXT   NOT NULL,
    started_at_us BIGINT NOT NULL,
    audit_id      BIGINT NOT NULL,
    PRIMARY KEY (key_kind, key, started_at_us)
);
