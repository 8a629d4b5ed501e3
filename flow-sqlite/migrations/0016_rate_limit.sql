-- As PostgreSQL's migration 18: `rate_limit(limit, period, key)`. An event over a
-- key's limit starts no run; the run it would have started is recorded, ended,
-- as `skipped` with the reason as its error. SQLite cannot change a CHECK
-- constraint, so the table is rebuilt (its indexes and triggers with it, as they
-- were, `skipped` added to the ended statuses that insert triggers pass over, and
-- a run's start deadline counted from when it is due, for a run an event with a
-- future timestamp delays).

CREATE TABLE flow_runs_new (
    id               TEXT PRIMARY KEY,
    function_id      TEXT NOT NULL,
    event_id         TEXT NOT NULL,
    status           TEXT NOT NULL CHECK (status IN
                       ('queued', 'running', 'sleeping', 'waiting', 'blocked', 'completed',
                        'failed', 'cancelled', 'skipped')),
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
    step_count       INTEGER NOT NULL DEFAULT 0,
    wait_since       INTEGER,
    parent_id        TEXT,
    woken_under      INTEGER,
    awaits_cancel    INTEGER NOT NULL DEFAULT 0,
    timeout_at       INTEGER,
    finish_within    INTEGER,
    concurrency_keys TEXT,
    active_keys      TEXT
);

INSERT INTO flow_runs_new
    (id, function_id, event_id, status, not_before, lease_owner, lease_token, lease_expires_at,
     lost_count, current_step, output, error, created_at, started_at, finished_at, error_kind,
     error_step, lost_by, lost_at, lost_step, lost_after, blocked_count, step_count, wait_since,
     parent_id, woken_under, awaits_cancel, timeout_at, finish_within, concurrency_keys,
     active_keys)
SELECT id, function_id, event_id, status, not_before, lease_owner, lease_token, lease_expires_at,
       lost_count, current_step, output, error, created_at, started_at, finished_at, error_kind,
       error_step, lost_by, lost_at, lost_step, lost_after, blocked_count, step_count, wait_since,
       parent_id, woken_under, awaits_cancel, timeout_at, finish_within, concurrency_keys,
       active_keys
FROM flow_runs;

DROP TABLE flow_runs;
ALTER TABLE flow_runs_new RENAME TO flow_runs;

CREATE INDEX flow_runs_leased ON flow_runs (lease_expires_at) WHERE status = 'running';

CREATE INDEX flow_runs_by_event ON flow_runs (event_id);

CREATE INDEX flow_runs_due ON flow_runs (not_before)
    WHERE status IN ('queued', 'sleeping', 'waiting', 'blocked');

CREATE TRIGGER flow_runs_ended
    AFTER UPDATE OF status ON flow_runs
    WHEN NEW.status IN ('completed', 'failed', 'cancelled') AND OLD.status <> NEW.status
BEGIN
    DELETE FROM flow_waits WHERE run_id = NEW.id;

    -- An invoked run's end: the parent's invoke step, its wake-up, its wait closed.
    INSERT INTO flow_steps
        (run_id, key, position, kind, output, error, attempts, started_at, finished_at)
    SELECT w.run_id, w.key, w.position, 'invoke',
           CASE WHEN NEW.status = 'completed'
                THEN json_object('run_id', NEW.id, 'output', json(NEW.output)) END,
           CASE NEW.status
               WHEN 'failed' THEN json_object('kind', 'fatal', 'message',
                   'invoked function `' || NEW.function_id || '` failed (run ' || NEW.id
                   || '): ' || COALESCE(NEW.error, ''))
               WHEN 'cancelled' THEN json_object('kind', 'fatal', 'message',
                   'invoked function `' || NEW.function_id || '` was cancelled (run ' || NEW.id
                   || '): ' || COALESCE(NEW.error, '')) END,
           1, w.since, NEW.finished_at
    FROM flow_waits w
    WHERE NEW.parent_id IS NOT NULL AND w.run_id = NEW.parent_id
      AND w.name = 'flow/invoke' AND w.field = 'run_id' AND w.value = NEW.id
    ON CONFLICT (run_id, key) DO NOTHING;
    UPDATE flow_runs
    SET status = CASE WHEN status IN ('waiting', 'sleeping', 'queued')
                      THEN 'queued' ELSE status END,
        not_before = CASE WHEN status IN ('waiting', 'sleeping', 'queued')
                          THEN min(not_before, NEW.finished_at) ELSE not_before END,
        wait_since = CASE WHEN status IN ('waiting', 'sleeping')
                          THEN NEW.finished_at ELSE wait_since END,
        woken_under = CASE WHEN status = 'running' THEN lease_token ELSE woken_under END,
        step_count = step_count + 1
    WHERE NEW.parent_id IS NOT NULL AND id = NEW.parent_id
      AND EXISTS (SELECT 1 FROM flow_waits w
                  WHERE w.run_id = NEW.parent_id AND w.name = 'flow/invoke'
                    AND w.field = 'run_id' AND w.value = NEW.id);
    DELETE FROM flow_waits
    WHERE NEW.parent_id IS NOT NULL AND run_id = NEW.parent_id
      AND name = 'flow/invoke' AND field = 'run_id' AND value = NEW.id;

    -- flow's system events, as in migration 5.
    INSERT INTO flow_events (id, name, data, producer_id, ts, received_at)
    SELECT lower(hex(randomblob(4)) || '-' || hex(randomblob(2)) || '-4'
                 || substr(hex(randomblob(2)), 2) || '-'
                 || substr('89AB', 1 + abs(random()) % 4, 1) || substr(hex(randomblob(2)), 2)
                 || '-' || hex(randomblob(6))),
           n.name,
           json_object(
               'function_id', NEW.function_id,
               'run_id', NEW.id,
               'status', NEW.status,
               'event', json_object('id', e.id, 'name', e.name, 'data', json(e.data),
                   'ts', strftime('%Y-%m-%dT%H:%M:%S', e.ts / 1000000, 'unixepoch')
                         || '.' || printf('%06d', e.ts % 1000000) || 'Z'),
               'output', json(NEW.output),
               'error', CASE WHEN NEW.status = 'failed' THEN json_object(
                   'kind', NEW.error_kind, 'message', NEW.error, 'step', NEW.error_step) END,
               'reason', CASE WHEN NEW.status = 'cancelled' THEN NEW.error END),
           NULL, NEW.finished_at, NEW.finished_at
    FROM (SELECT 'flow/function.finished' AS name
          UNION ALL SELECT 'flow/function.failed' WHERE NEW.status = 'failed'
          UNION ALL SELECT 'flow/function.cancelled' WHERE NEW.status = 'cancelled') AS n
    JOIN flow_events e ON e.id = NEW.event_id
    WHERE e.name NOT IN ('flow/function.finished', 'flow/function.failed',
                         'flow/function.cancelled')
      AND EXISTS (SELECT 1 FROM flow_functions f
                  WHERE f.trigger = n.name
                    AND (f.failures_of IS NULL OR f.failures_of = NEW.function_id));
    INSERT INTO flow_runs (id, function_id, event_id, status, not_before, created_at)
    SELECT lower(hex(randomblob(4)) || '-' || hex(randomblob(2)) || '-4'
                 || substr(hex(randomblob(2)), 2) || '-'
                 || substr('89AB', 1 + abs(random()) % 4, 1) || substr(hex(randomblob(2)), 2)
                 || '-' || hex(randomblob(6))),
           f.id, e.id, 'queued', NEW.finished_at, NEW.finished_at
    FROM flow_events e JOIN flow_functions f ON f.trigger = e.name
    WHERE e.name IN ('flow/function.finished', 'flow/function.failed', 'flow/function.cancelled')
      AND e.received_at = NEW.finished_at
      AND json_extract(e.data, '$.run_id') = NEW.id
      AND (f.failures_of IS NULL OR f.failures_of = NEW.function_id);
END;

CREATE TRIGGER flow_runs_created_register_cancel_waits
    AFTER INSERT ON flow_runs
    WHEN NEW.status NOT IN ('completed', 'failed', 'cancelled', 'skipped')
         AND EXISTS (SELECT 1 FROM flow_cancel_triggers c WHERE c.function_id = NEW.function_id)
BEGIN
    INSERT INTO flow_cancel_waits (run_id, event_id, name, field, value, since)
    SELECT NEW.id, NEW.event_id, c.name, c.field, e.data -> ('$."' || c.field || '"'),
           NEW.created_at - 1000000
    FROM flow_cancel_triggers c JOIN flow_events e ON e.id = NEW.event_id
    WHERE c.function_id = NEW.function_id
      AND json_type(e.data) = 'object'
      AND json_type(e.data, '$."' || c.field || '"') IS NOT NULL
      AND length(CAST(e.data -> ('$."' || c.field || '"') AS BLOB)) <= 1024
    ON CONFLICT DO NOTHING;
    UPDATE flow_runs SET awaits_cancel = 1
    WHERE id = NEW.id AND EXISTS (SELECT 1 FROM flow_cancel_waits w WHERE w.run_id = NEW.id);
    UPDATE flow_runs
    SET status = 'cancelled',
        error = (SELECT 'cancelled by event `' || k.name || '` (' || k.event_id || '): its `'
                        || k.field || '` matches this run''s (cancel_on)'
                 FROM flow_cancel_waits w
                 JOIN flow_wait_keys k ON k.name = w.name AND k.field = w.field AND k.value = w.value
                 WHERE w.run_id = NEW.id AND k.event_at > w.since AND k.event_id <> w.event_id
                 LIMIT 1),
        error_kind = NULL, error_step = NULL, finished_at = NEW.created_at,
        lease_owner = NULL, lease_expires_at = NULL
    WHERE id = NEW.id
      AND EXISTS (SELECT 1 FROM flow_cancel_waits w
                  JOIN flow_wait_keys k ON k.name = w.name AND k.field = w.field AND k.value = w.value
                  WHERE w.run_id = NEW.id AND k.event_at > w.since AND k.event_id <> w.event_id);
END;

CREATE TRIGGER flow_runs_end_closes_cancel_waits
    AFTER UPDATE OF status ON flow_runs
    WHEN NEW.awaits_cancel AND NEW.status IN ('completed', 'failed', 'cancelled')
         AND OLD.status <> NEW.status
BEGIN
    DELETE FROM flow_cancel_waits WHERE run_id = NEW.id;
END;

CREATE INDEX flow_runs_timeouts ON flow_runs (timeout_at)
    WHERE timeout_at IS NOT NULL AND status NOT IN ('completed', 'failed', 'cancelled');

CREATE TRIGGER flow_runs_created_set_timeouts
    AFTER INSERT ON flow_runs
    WHEN NEW.status NOT IN ('completed', 'failed', 'cancelled', 'skipped')
         AND EXISTS (SELECT 1 FROM flow_functions f
                     WHERE f.id = NEW.function_id
                       AND (f.start_timeout IS NOT NULL OR f.finish_timeout IS NOT NULL))
BEGIN
    UPDATE flow_runs
    SET timeout_at = max(NEW.created_at, NEW.not_before)
                     + (SELECT f.start_timeout FROM flow_functions f WHERE f.id = NEW.function_id),
        finish_within = (SELECT f.finish_timeout FROM flow_functions f WHERE f.id = NEW.function_id)
    WHERE id = NEW.id;
END;

CREATE INDEX flow_runs_active ON flow_runs (status) WHERE active_keys IS NOT NULL;


-- Each rate-limit key's theoretical arrival time (GCRA), per function, read and
-- moved by sends inside their write transaction.
CREATE TABLE flow_rate_limits (
    function_id TEXT NOT NULL,
    key         TEXT NOT NULL,
    tat         INTEGER NOT NULL,
    PRIMARY KEY (function_id, key)
);
