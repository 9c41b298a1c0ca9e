-- Several replicas on one database (PostgreSQL) each aggregate their own invocations and write their own
-- telemetry rows; readers merge the rows of every replica. The replica is part of each row's key. One
-- process on SQLite is the replica '' (every row written before this migration too). SQLite cannot change
-- a primary key in place, so each table is rebuilt with its rows.
CREATE TABLE rollups_by_replica (
    resolution       INTEGER NOT NULL,
    series_id        INTEGER NOT NULL,
    start            INTEGER NOT NULL,
    replica          TEXT    NOT NULL,
    ok               INTEGER NOT NULL,
    plugin_error     INTEGER NOT NULL,
    trap             INTEGER NOT NULL,
    timeout          INTEGER NOT NULL,
    fuel_exhausted   INTEGER NOT NULL,
    memory_limit     INTEGER NOT NULL,
    output_too_large INTEGER NOT NULL,
    input_too_large  INTEGER NOT NULL,
    rejected         INTEGER NOT NULL,
    wall_sum_us      INTEGER NOT NULL,
    cpu_sum_us       INTEGER NOT NULL,
    instructions     INTEGER NOT NULL,
    input_bytes      INTEGER NOT NULL,
    output_bytes     INTEGER NOT NULL,
    memory_peak_max  INTEGER NOT NULL,
    p50_us           INTEGER,
    p95_us           INTEGER,
    p99_us           INTEGER,
    max_us           INTEGER,
    sketch           BLOB,
    instructions_max INTEGER NOT NULL DEFAULT 0,
    output_bytes_max INTEGER NOT NULL DEFAULT 0,
    concurrency_max  INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (resolution, series_id, start, replica)
) WITHOUT ROWID;
INSERT INTO rollups_by_replica
    SELECT resolution, series_id, start, '', ok, plugin_error, trap, timeout, fuel_exhausted, memory_limit,
           output_too_large, input_too_large, rejected, wall_sum_us, cpu_sum_us, instructions, input_bytes,
           output_bytes, memory_peak_max, p50_us, p95_us, p99_us, max_us, sketch, instructions_max,
           output_bytes_max, concurrency_max
    FROM rollups;
DROP TABLE rollups;
ALTER TABLE rollups_by_replica RENAME TO rollups;
-- (PostgreSQL also indexes rollups by start, for the other replicas' reads of the live window; one SQLite
-- process reads no peers, and the index would add 40 % to what a day of traffic stores.)

CREATE TABLE ten_second_sketches_by_replica (
    series_id INTEGER NOT NULL,
    start     INTEGER NOT NULL,
    replica   TEXT    NOT NULL,
    sketch    BLOB    NOT NULL,
    PRIMARY KEY (series_id, start, replica)
) WITHOUT ROWID;
INSERT INTO ten_second_sketches_by_replica SELECT series_id, start, '', sketch FROM ten_second_sketches;
DROP TABLE ten_second_sketches;
ALTER TABLE ten_second_sketches_by_replica RENAME TO ten_second_sketches;

CREATE TABLE host_samples_by_replica (
    replica            TEXT    NOT NULL,
    at                 INTEGER NOT NULL,
    cpu_usage          REAL    NOT NULL,
    cpu_cores          INTEGER NOT NULL,
    memory_used_bytes  INTEGER NOT NULL,
    memory_total_bytes INTEGER NOT NULL,
    disk_used_bytes    INTEGER NOT NULL,
    disk_total_bytes   INTEGER NOT NULL,
    process_rss_bytes  INTEGER NOT NULL,
    process_cpu_usage  REAL    NOT NULL,
    PRIMARY KEY (replica, at)
) WITHOUT ROWID;
INSERT INTO host_samples_by_replica
    SELECT '', at, cpu_usage, cpu_cores, memory_used_bytes, memory_total_bytes, disk_used_bytes, disk_total_bytes,
           process_rss_bytes, process_cpu_usage
    FROM host_samples;
DROP TABLE host_samples;
ALTER TABLE host_samples_by_replica RENAME TO host_samples;
CREATE INDEX host_samples_by_time ON host_samples (at);

-- Plugin components for every replica (PostgreSQL's copy in 1 MiB chunks). One SQLite process keeps them
-- in the data directory only, so this table stays empty; it is here so that one schema version means one
-- schema on both databases.
CREATE TABLE artifact_chunks (
    sha256 TEXT    NOT NULL,
    seq    INTEGER NOT NULL,
    bytes  BLOB    NOT NULL,
    PRIMARY KEY (sha256, seq)
) WITHOUT ROWID;
