-- Events gathered into one run (`batch_events`, `debounce`; flow_core::grouping),
-- as in PostgreSQL's migration 20. A grouped run's `event_id` is its first
-- event; every event of the group is listed here in the order it joined.
CREATE TABLE flow_run_events (
    run_id   TEXT NOT NULL,
    position INTEGER NOT NULL,
    event_id TEXT NOT NULL,
    PRIMARY KEY (run_id, position)
);
CREATE INDEX flow_run_events_by_event ON flow_run_events (event_id);

-- The latest group of each key, per function; open while its run is queued and
-- not yet due (a send holds the file's write lock, so no claim comes between).
CREATE TABLE flow_event_groups (
    function_id TEXT NOT NULL,
    key         TEXT NOT NULL,
    run_id      TEXT NOT NULL,
    size        INTEGER NOT NULL,
    opened_at   INTEGER NOT NULL,
    PRIMARY KEY (function_id, key)
);
