-- The latency sketch of each recent 10 s rollup (10 s rows in `rollups` keep quantiles only, to bound
-- storage), so that a restarted process continues the live window exactly: the open bucket's row is
-- rewritten with the earlier process's sketch merged in, and the overview's quantiles cover the restart.
-- Pruned after an hour.
CREATE TABLE ten_second_sketches (
    series_id INTEGER NOT NULL,
    start     INTEGER NOT NULL,
    sketch    BLOB    NOT NULL,
    PRIMARY KEY (series_id, start)
) WITHOUT ROWID;
