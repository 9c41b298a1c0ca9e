-- Alerting: rules and the state of their alerts, the transition history, silences, notification channels
-- (their secret settings sealed like plugin config secrets) and each channel's outbox. Times are Unix
-- seconds, booleans 0/1, enum values their stable names (plugwatch-model's `as_str`). Labels and settings
-- are child tables, never JSON.

-- Alert rules. `outcomes` is a comma-separated list of outcome names ('' = every failing outcome);
-- `headroom_limit` is set for the headroom metric only.
CREATE TABLE alert_rules (
    id                   INTEGER PRIMARY KEY,
    name                 TEXT    NOT NULL UNIQUE,
    enabled              INTEGER NOT NULL,
    builtin              INTEGER NOT NULL DEFAULT 0,
    scope                TEXT    NOT NULL,
    plugins              TEXT    NOT NULL,
    metric               TEXT    NOT NULL,
    outcomes             TEXT    NOT NULL DEFAULT '',
    headroom_limit       TEXT,
    window_secs          INTEGER NOT NULL,
    comparison           TEXT    NOT NULL,
    threshold            REAL    NOT NULL,
    for_secs             INTEGER NOT NULL,
    keep_firing_for_secs INTEGER NOT NULL,
    no_data              TEXT    NOT NULL,
    severity             TEXT    NOT NULL,
    summary              TEXT    NOT NULL,
    runbook              TEXT    NOT NULL,
    created_at           INTEGER NOT NULL,
    updated_at           INTEGER NOT NULL
);

CREATE TABLE alert_rule_labels (
    rule_id INTEGER NOT NULL REFERENCES alert_rules (id) ON DELETE CASCADE,
    key     TEXT    NOT NULL,
    value   TEXT    NOT NULL,
    PRIMARY KEY (rule_id, key)
);

-- Facts about alerting as a whole: `defaults_installed` (its value is when) once the built-in rules were
-- installed, so that deleting one does not bring it back.
CREATE TABLE alert_meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

-- The alerts that are not inactive: one per rule and series. '' in `plugin` and `version` is the host
-- series (no plugin, no version).
CREATE TABLE alert_states (
    rule_id     INTEGER NOT NULL REFERENCES alert_rules (id) ON DELETE CASCADE,
    plugin      TEXT    NOT NULL DEFAULT '',
    version     TEXT    NOT NULL DEFAULT '',
    state       TEXT    NOT NULL,
    since       INTEGER NOT NULL,
    last_true   INTEGER,
    value       REAL,
    notified_at INTEGER,
    PRIMARY KEY (rule_id, plugin, version)
);

-- Every transition, append-only (rows are deleted by retention only). No foreign key: the history of a
-- deleted rule stays, with the rule's name as it was.
CREATE TABLE alert_history (
    id         INTEGER PRIMARY KEY,
    at         INTEGER NOT NULL,
    rule_id    INTEGER NOT NULL,
    rule_name  TEXT    NOT NULL,
    plugin     TEXT,
    version    TEXT,
    from_state TEXT    NOT NULL,
    to_state   TEXT    NOT NULL,
    value      REAL,
    threshold  REAL    NOT NULL,
    severity   TEXT    NOT NULL,
    silenced   INTEGER NOT NULL
);
CREATE INDEX alert_history_by_at ON alert_history (at);
CREATE INDEX alert_history_by_rule ON alert_history (rule_id, id);
CREATE INDEX alert_history_by_plugin ON alert_history (plugin, id);
CREATE INDEX alert_history_by_state ON alert_history (to_state, id);

-- Silences. A schedule (a weekly maintenance window) is all three `schedule_` columns or none.
-- `expired_at` is set when a silence is ended early (and `ends_at` then is at most that).
CREATE TABLE silences (
    id                        INTEGER PRIMARY KEY,
    rule_id                   INTEGER,
    plugins                   TEXT,
    starts_at                 INTEGER NOT NULL,
    ends_at                   INTEGER NOT NULL,
    schedule_weekdays         INTEGER,
    schedule_start_minute     INTEGER,
    schedule_duration_minutes INTEGER,
    comment                   TEXT    NOT NULL,
    author                    TEXT    NOT NULL,
    created_at                INTEGER NOT NULL,
    expired_at                INTEGER,
    CHECK ((schedule_weekdays IS NULL) = (schedule_start_minute IS NULL)
       AND (schedule_weekdays IS NULL) = (schedule_duration_minutes IS NULL))
);
CREATE INDEX silences_by_end ON silences (ends_at);

CREATE TABLE silence_labels (
    silence_id INTEGER NOT NULL REFERENCES silences (id) ON DELETE CASCADE,
    key        TEXT    NOT NULL,
    value      TEXT    NOT NULL,
    PRIMARY KEY (silence_id, key)
);

-- Notification channels and their routing.
CREATE TABLE alert_channels (
    id                   INTEGER PRIMARY KEY,
    name                 TEXT    NOT NULL UNIQUE,
    kind                 TEXT    NOT NULL,
    enabled              INTEGER NOT NULL,
    min_severity         TEXT    NOT NULL,
    group_wait_secs      INTEGER NOT NULL,
    repeat_interval_secs INTEGER NOT NULL,
    created_at           INTEGER NOT NULL,
    updated_at           INTEGER NOT NULL
);

-- A channel's settings by name. Secret ones (`secret = 1`) are sealed (`pw1:<key id>:…`, see
-- src/secrets.rs) for the context `alert_channel/<channel id>/<key>`; they are never returned by the API.
CREATE TABLE alert_channel_settings (
    channel_id INTEGER NOT NULL REFERENCES alert_channels (id) ON DELETE CASCADE,
    key        TEXT    NOT NULL,
    value      TEXT    NOT NULL,
    secret     INTEGER NOT NULL DEFAULT 0,
    sealed     INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (channel_id, key)
);

-- Routing to the listed rules only (no row: every rule). Deleting a rule removes it from every list.
CREATE TABLE alert_channel_rules (
    channel_id INTEGER NOT NULL REFERENCES alert_channels (id) ON DELETE CASCADE,
    rule_id    INTEGER NOT NULL REFERENCES alert_rules (id) ON DELETE CASCADE,
    PRIMARY KEY (channel_id, rule_id)
);
CREATE INDEX alert_channel_rules_by_rule ON alert_channel_rules (rule_id);

CREATE TABLE alert_channel_labels (
    channel_id INTEGER NOT NULL REFERENCES alert_channels (id) ON DELETE CASCADE,
    key        TEXT    NOT NULL,
    value      TEXT    NOT NULL,
    PRIMARY KEY (channel_id, key)
);

-- Each channel's outbox: one notification per row with its delivery so far. `created_at` is when the row
-- was made, `notification_at` the notification's own time; `finished_seq` orders the deliveries by when
-- they were sent or finally failed (for counting a channel's consecutive failures).
CREATE TABLE alert_outbox (
    id              INTEGER PRIMARY KEY,
    channel_id      INTEGER NOT NULL REFERENCES alert_channels (id) ON DELETE CASCADE,
    kind            TEXT    NOT NULL,
    group_key       TEXT    NOT NULL,
    text            TEXT,
    notification_at INTEGER NOT NULL,
    created_at      INTEGER NOT NULL,
    status          TEXT    NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    last_error      TEXT,
    last_response   TEXT,
    sent_at         INTEGER,
    finished_seq    INTEGER
);
CREATE INDEX alert_outbox_due ON alert_outbox (status, next_attempt_at);
CREATE INDEX alert_outbox_by_channel ON alert_outbox (channel_id, id);

-- The alerts of one notification, in order.
CREATE TABLE alert_outbox_alerts (
    delivery_id INTEGER NOT NULL REFERENCES alert_outbox (id) ON DELETE CASCADE,
    position    INTEGER NOT NULL,
    rule_id     INTEGER NOT NULL,
    rule_name   TEXT    NOT NULL,
    plugin      TEXT,
    version     TEXT,
    state       TEXT    NOT NULL,
    severity    TEXT    NOT NULL,
    metric      TEXT    NOT NULL,
    comparison  TEXT    NOT NULL,
    threshold   REAL    NOT NULL,
    value       REAL,
    since       INTEGER NOT NULL,
    summary     TEXT    NOT NULL,
    runbook     TEXT    NOT NULL,
    PRIMARY KEY (delivery_id, position)
);

CREATE TABLE alert_outbox_labels (
    delivery_id INTEGER NOT NULL,
    position    INTEGER NOT NULL,
    key         TEXT    NOT NULL,
    value       TEXT    NOT NULL,
    PRIMARY KEY (delivery_id, position, key),
    FOREIGN KEY (delivery_id, position) REFERENCES alert_outbox_alerts (delivery_id, position) ON DELETE CASCADE
);
