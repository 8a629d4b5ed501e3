-- The same tables as flow-postgres, prefixed (SQLite has no schemas). Times are
-- microseconds since the Unix epoch, JSON is text, ids are UUID text.

CREATE TABLE flow_events (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    data        TEXT NOT NULL,
    producer_id TEXT,
    ts          INTEGER NOT NULL,
    received_at INTEGER NOT NULL
);

CREATE TABLE flow_event_ids (
    producer_id TEXT PRIMARY KEY,
    event_id    TEXT NOT NULL,
    expires_at  INTEGER NOT NULL
);

CREATE TABLE flow_functions (
    id        TEXT PRIMARY KEY,
    trigger   TEXT NOT NULL,
    last_seen INTEGER NOT NULL
);
CREATE INDEX flow_functions_by_trigger ON flow_functions (trigger);

CREATE TABLE flow_runs (
    id               TEXT PRIMARY KEY,
    function_id      TEXT NOT NULL,
    event_id         TEXT NOT NULL,
    status           TEXT NOT NULL CHECK (status IN
                       ('queued', 'running', 'sleeping', 'waiting', 'completed', 'failed', 'cancelled')),
    not_before       INTEGER NOT NULL,
    lease_owner      TEXT,
    lease_token      INTEGER NOT NULL DEFAULT 0,
    lease_expires_at INTEGER,
    lost_count       INTEGER NOT NULL DEFAULT 0,
    current_step     TEXT,
    output           TEXT,
    error            TEXT,
    created_at       INTEGER NOT NULL,
    started_at       INTEGER,
    finished_at      INTEGER
);
CREATE INDEX flow_runs_due ON flow_runs (not_before) WHERE status IN ('queued', 'sleeping');
CREATE INDEX flow_runs_leased ON flow_runs (lease_expires_at) WHERE status = 'running';
CREATE INDEX flow_runs_by_event ON flow_runs (event_id);

CREATE TABLE flow_steps (
    run_id      TEXT NOT NULL,
    key         TEXT NOT NULL,
    position    INTEGER NOT NULL,
    kind        TEXT NOT NULL,
    output      TEXT,
    error       TEXT,
    attempts    INTEGER NOT NULL,
    started_at  INTEGER NOT NULL,
    finished_at INTEGER NOT NULL,
    wake_at     INTEGER,
    PRIMARY KEY (run_id, key)
);

CREATE TABLE flow_attempts (
    run_id      TEXT NOT NULL,
    key         TEXT NOT NULL,
    attempt     INTEGER NOT NULL,
    error       TEXT NOT NULL,
    started_at  INTEGER NOT NULL,
    finished_at INTEGER NOT NULL,
    retry_at    INTEGER NOT NULL,
    PRIMARY KEY (run_id, key, attempt)
);
