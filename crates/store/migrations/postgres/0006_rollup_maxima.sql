-- PostgreSQL's version of sqlite/0006_rollup_maxima.sql: the largest single invocation of each interval,
-- for headroom against a plugin's own limits.
ALTER TABLE rollups ADD COLUMN instructions_max BIGINT NOT NULL DEFAULT 0;
ALTER TABLE rollups ADD COLUMN output_bytes_max BIGINT NOT NULL DEFAULT 0;
ALTER TABLE rollups ADD COLUMN concurrency_max BIGINT NOT NULL DEFAULT 0;
