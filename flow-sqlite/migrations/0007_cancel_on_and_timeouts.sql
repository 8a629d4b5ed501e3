-- cancel_on and timeouts, as in flow-postgres's migration 9.
--
-- cancel_on: workers announce each function's
-- cancel triggers and await their fields (so sends key their events in
-- flow_wait_keys), each new run of such a function registers a cancel wait per
-- trigger, and a send of a matching event cancels the run. SQLite runs one write
-- transaction at a time, so the two sides never race: a run created after a
-- matching event was stored (within the second before it, as on PostgreSQL,
-- where two sends in flight at once have no order) is cancelled at once.
CREATE TABLE flow_cancel_triggers (
    function_id TEXT NOT NULL,
    name        TEXT NOT NULL,
    field       TEXT NOT NULL,
    PRIMARY KEY (function_id, name, field)
);

CREATE TABLE flow_cancel_waits (
    run_id   TEXT NOT NULL,
    event_id TEXT NOT NULL,
    name     TEXT NOT NULL,
    field    TEXT NOT NULL,
    value    TEXT NOT NULL,
    since    INTEGER NOT NULL,
    PRIMARY KEY (run_id, name, field)
);
CREATE INDEX flow_cancel_waits_by_match ON flow_cancel_waits (name, field, value);

-- Whether a run registered cancel waits: only such a run's end looks for them.
ALTER TABLE flow_runs ADD COLUMN awaits_cancel INTEGER NOT NULL DEFAULT 0;

-- The reason is the one flow_core::store::cancel_on_reason writes.
CREATE TRIGGER flow_runs_created_register_cancel_waits
    AFTER INSERT ON flow_runs
    WHEN NEW.status NOT IN ('completed', 'failed', 'cancelled')
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

-- A run that ends closes its cancel waits (only a run that registered some pays
-- for the trigger).
CREATE TRIGGER flow_runs_end_closes_cancel_waits
    AFTER UPDATE OF status ON flow_runs
    WHEN NEW.awaits_cancel AND NEW.status IN ('completed', 'failed', 'cancelled')
         AND OLD.status <> NEW.status
BEGIN
    DELETE FROM flow_cancel_waits WHERE run_id = NEW.id;
END;

-- timeouts(start, finish): a new run of a function with timeouts gets its
-- deadline to start by and keeps its finish timeout until its first claim.
ALTER TABLE flow_functions ADD COLUMN start_timeout INTEGER;
ALTER TABLE flow_functions ADD COLUMN finish_timeout INTEGER;
ALTER TABLE flow_runs ADD COLUMN timeout_at INTEGER;
ALTER TABLE flow_runs ADD COLUMN finish_within INTEGER;
CREATE INDEX flow_runs_timeouts ON flow_runs (timeout_at)
    WHERE timeout_at IS NOT NULL AND status NOT IN ('completed', 'failed', 'cancelled');

CREATE TRIGGER flow_runs_created_set_timeouts
    AFTER INSERT ON flow_runs
    WHEN NEW.status NOT IN ('completed', 'failed', 'cancelled')
         AND EXISTS (SELECT 1 FROM flow_functions f
                     WHERE f.id = NEW.function_id
                       AND (f.start_timeout IS NOT NULL OR f.finish_timeout IS NOT NULL))
BEGIN
    UPDATE flow_runs
    SET timeout_at = NEW.created_at
                     + (SELECT f.start_timeout FROM flow_functions f WHERE f.id = NEW.function_id),
        finish_within = (SELECT f.finish_timeout FROM flow_functions f WHERE f.id = NEW.function_id)
    WHERE id = NEW.id;
END;
