-- Invoke (ctx.invoke), as in flow-postgres's migration 8: the parent's wait for
-- the run it invoked is kept among the waits for events (name `flow/invoke`,
-- field `run_id`, value the child's id), and the statement that ends the child
-- records how it ended as the parent's invoke step and wakes the parent, or marks
-- it (`woken_under`) when it is executing, so that its next park wakes it at once.
ALTER TABLE flow_runs ADD COLUMN parent_id TEXT;
ALTER TABLE flow_runs ADD COLUMN woken_under INTEGER;

DROP TRIGGER flow_runs_ended;

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
