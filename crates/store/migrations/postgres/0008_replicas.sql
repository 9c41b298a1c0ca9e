-- PostgreSQL's version of sqlite/0008_replicas.sql: each replica writes its own telemetry rows, the
-- replica part of their key; readers merge every replica's rows. Rows written before are the replica ''.
ALTER TABLE rollups ADD COLUMN replica TEXT NOT NULL DEFAULT '';
ALTER TABLE rollups DROP CONSTRAINT rollups_pkey;
ALTER TABLE rollups ADD PRIMARY KEY (resolution, series_id, start, replica);
ALTER TABLE rollups ALTER COLUMN replica DROP DEFAULT;
-- The live window of every series, which the other replicas read every few seconds (SQLite, one
-- process, has no such reader).
CREATE INDEX rollups_by_start ON rollups (resolution, start);

ALTER TABLE ten_second_sketches ADD COLUMN replica TEXT NOT NULL DEFAULT '';
ALTER TABLE ten_second_sketches DROP CONSTRAINT ten_second_sketches_pkey;
ALTER TABLE ten_second_sketches ADD PRIMARY KEY (series_id, start, replica);
ALTER TABLE ten_second_sketches ALTER COLUMN replica DROP DEFAULT;

ALTER TABLE host_samples ADD COLUMN replica TEXT NOT NULL DEFAULT '';
ALTER TABLE host_samples DROP CONSTRAINT host_samples_pkey;
ALTER TABLE host_samples ADD PRIMARY KEY (replica, at);
ALTER TABLE host_samples ALTER COLUMN replica DROP DEFAULT;
CREATE INDEX host_samples_by_time ON host_samples (at);

-- Plugin components, for every replica (in 1 MiB chunks): a replica that lacks one fetches it from here,
-- checks its sha256 and keeps it in its own data directory.
CREATE TABLE artifact_chunks (
    sha256 TEXT   NOT NULL,
    seq    BIGINT NOT NULL,
    bytes  BYTEA  NOT NULL,
    PRIMARY KEY (sha256, seq)
);
