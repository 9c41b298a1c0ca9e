-- PostgreSQL's version of sqlite/0003_ten_second_sketches.sql: the latency sketch of each recent 10 s
-- rollup, so that a restarted process continues the live window exactly. Pruned after an hour.
CREATE TABLE ten_second_sketches (
    series_id BIGINT NOT NULL,
    start     BIGINT NOT NULL,
    sketch    BYTEA  NOT NULL,
    PRIMARY KEY (series_id, start)
);
