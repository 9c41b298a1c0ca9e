-- Plugins and their versions. A version's manifest is normalised into columns and child tables so that
-- the store speaks domain types, not JSON.
CREATE TABLE plugins (
    id                  INTEGER PRIMARY KEY,
    name                TEXT    NOT NULL UNIQUE,
    enabled             INTEGER NOT NULL DEFAULT 1,
    active_version_id   INTEGER,
    previous_version_id INTEGER,
    created_at          INTEGER NOT NULL,
    updated_at          INTEGER NOT NULL
);

CREATE TABLE plugin_versions (
    id               INTEGER PRIMARY KEY,
    plugin_id        INTEGER NOT NULL REFERENCES plugins (id) ON DELETE CASCADE,
    version          TEXT    NOT NULL,
    sha256           TEXT    NOT NULL,
    size             INTEGER NOT NULL,
    description      TEXT,
    failure_policy   TEXT    NOT NULL,
    timeout_us       INTEGER NOT NULL,
    fuel             INTEGER,
    memory_bytes     INTEGER NOT NULL,
    max_input_bytes  INTEGER NOT NULL,
    max_output_bytes INTEGER NOT NULL,
    max_log_bytes    INTEGER NOT NULL,
    max_concurrency  INTEGER NOT NULL,
    max_queue        INTEGER NOT NULL,
    created_at       INTEGER NOT NULL,
    UNIQUE (plugin_id, version)
);

CREATE TABLE subscriptions (
    version_id INTEGER NOT NULL REFERENCES plugin_versions (id) ON DELETE CASCADE,
    hook       TEXT    NOT NULL,
    priority   INTEGER NOT NULL,
    PRIMARY KEY (version_id, hook)
);

-- Operator-set values a plugin reads with `host.config`. Secret values are never returned by the API.
CREATE TABLE plugin_config (
    version_id INTEGER NOT NULL REFERENCES plugin_versions (id) ON DELETE CASCADE,
    key        TEXT    NOT NULL,
    value      TEXT    NOT NULL,
    secret     INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (version_id, key)
);

-- One row per (plugin, version) that has telemetry; rollups refer to it by a small integer.
CREATE TABLE series (
    id      INTEGER PRIMARY KEY,
    plugin  TEXT NOT NULL,
    version TEXT NOT NULL,
    UNIQUE (plugin, version)
);

-- Time-bucketed aggregates. 10 s rows carry quantiles but no sketch (to bound storage); minute and hour
-- rows carry the mergeable latency sketch.
CREATE TABLE rollups (
    resolution       INTEGER NOT NULL,
    series_id        INTEGER NOT NULL,
    start            INTEGER NOT NULL,
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
    PRIMARY KEY (resolution, series_id, start)
) WITHOUT ROWID;

-- The run log: recent invocations with their log lines (sampled per flush; failures kept longer).
CREATE TABLE runs (
    id                 INTEGER PRIMARY KEY,
    plugin             TEXT    NOT NULL,
    version            TEXT    NOT NULL,
    hook               TEXT    NOT NULL,
    started_at_us      INTEGER NOT NULL,
    outcome            TEXT    NOT NULL,
    failed             INTEGER NOT NULL,
    trap_kind          TEXT,
    detail             TEXT,
    wall_us            INTEGER NOT NULL,
    queued_us          INTEGER NOT NULL,
    instantiate_us     INTEGER NOT NULL,
    cpu_us             INTEGER NOT NULL,
    instructions       INTEGER,
    memory_peak_bytes  INTEGER NOT NULL,
    input_bytes        INTEGER NOT NULL,
    output_bytes       INTEGER NOT NULL,
    logs               TEXT    NOT NULL,
    logs_dropped_bytes INTEGER NOT NULL
);
CREATE INDEX runs_by_plugin ON runs (plugin, failed, started_at_us);

-- Host resources, sampled every few seconds.
CREATE TABLE host_samples (
    at                 INTEGER PRIMARY KEY,
    cpu_usage          REAL    NOT NULL,
    cpu_cores          INTEGER NOT NULL,
    memory_used_bytes  INTEGER NOT NULL,
    memory_total_bytes INTEGER NOT NULL,
    disk_used_bytes    INTEGER NOT NULL,
    disk_total_bytes   INTEGER NOT NULL,
    process_rss_bytes  INTEGER NOT NULL,
    process_cpu_usage  REAL    NOT NULL
);
