-- What happens when a run ends, however it ends, as in flow-postgres's migration 7:
-- its open waits close, and flow's system events about it are sent to the
-- functions announced with them as their trigger (one queued run each). Ids here
-- are random UUIDs (SQLite makes no time-ordered ones); the store wakes its
-- workers after a write that ended runs while such functions exist. An
-- `on_failure` handler names in `failures_of` the function whose failures it gets.
ALTER TABLE flow_functions ADD COLUMN failures_of TEXT;

DROP TRIGGER flow_runs_end_closes_waits;

CREATE TRIGGER flow_runs_ended
    AFTER UPDATE OF status ON flow_runs
    WHEN NEW.status IN ('completed', 'failed', 'cancelled') AND OLD.status <> NEW.status
BEGIN
    DELETE FROM flow_waits WHERE run_id = NEW.id;
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
    WHERE e.name NOT LIKE 'flow/function.%'
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
