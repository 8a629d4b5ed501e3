-- A run that cannot replay (its code changed under it) is held as `blocked`
-- instead of failed. It is retried with backoff (`blocked_count`) and at once when a
-- worker announces its function, so a fixed or rolled-back deploy resumes it.
-- SQLite cannot change a CHECK constraint: the table is rebuilt.
CREATE TABLE flow_runs_new (
    id               TEXT PRIMARY KEY,
    function_id      TEXT NOT NULL,
    event_id         TEXT NOT NULL,
    status           TEXT NOT NULL CHECK (status IN
                       ('queued', 'running', 'sleeping', 'waiting', 'blocked', 'completed',
                        'failed', 'cancelled')),
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
    finished_at      INTEGER,
    error_kind       TEXT,
    error_step       TEXT,
    lost_by          TEXT,
    lost_at          INTEGER,
    lost_step        TEXT,
    lost_after       TEXT,
    blocked_count    INTEGER NOT NULL DEFAULT 0,
    -- How many step records the run is known to have: a resumed run that loads
    -- fewer reports the missing rows instead of running their steps again.
    step_count       INTEGER NOT NULL DEFAULT 0
);
INSERT INTO flow_runs_new
    (id, function_id, event_id, status, not_before, lease_owner, lease_token, lease_expires_at,
     lost_count, current_step, output, error, created_at, started_at, finished_at, error_kind,
     error_step, lost_by, lost_at, lost_step, lost_after, step_count)
SELECT id, function_id, event_id, status, not_before, lease_owner, lease_token, lease_expires_at,
       lost_count, current_step, output, error, created_at, started_at, finished_at, error_kind,
       error_step, lost_by, lost_at, lost_step, lost_after,
       (SELECT count(*) FROM flow_steps s WHERE s.run_id = flow_runs.id)
FROM flow_runs;
DROP TABLE flow_runs;
ALTER TABLE flow_runs_new RENAME TO flow_runs;
CREATE INDEX flow_runs_due ON flow_runs (not_before) WHERE status IN ('queued', 'sleeping', 'blocked');
CREATE INDEX flow_runs_leased ON flow_runs (lease_expires_at) WHERE status = 'running';
CREATE INDEX flow_runs_by_event ON flow_runs (event_id);
