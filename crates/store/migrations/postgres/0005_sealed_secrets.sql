-- PostgreSQL's version of sqlite/0005_sealed_secrets.sql: secret config values are sealed (encrypted,
-- `pw1:<key id>:…`, see src/secrets.rs).
ALTER TABLE plugin_config ADD COLUMN sealed BOOLEAN NOT NULL DEFAULT FALSE;
