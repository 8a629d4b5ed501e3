-- What happens when a run ends, however it ends (its worker's finish, a cancel, an
-- operator's settlement, too many lost workers): one rule here instead of one in
-- every statement that can end a run. It closes the run's open waits, and sends
-- flow's system events about it (flow-core's `system.rs`): `flow/function.finished`,
-- and `.failed` or `.cancelled`, each only while a function is announced with it as
-- its trigger, one queued run per such function, as a send would. A run started by
-- one of them sends none, so that no function triggers itself. A function's
-- `on_failure` handler is announced with `failures_of` naming it: it gets that
-- function's failures only.
ALTER TABLE flow.functions ADD COLUMN failures_of text;

CREATE FUNCTION flow.run_ended() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    ended_at timestamptz := COALESCE(NEW.finished_at, now());
    names    text[] := ARRAY['flow/function.finished',
        CASE NEW.status WHEN 'failed' THEN 'flow/function.failed'
                        WHEN 'cancelled' THEN 'flow/function.cancelled' END];
    payload  jsonb;
    created_runs bigint;
BEGIN
    DELETE FROM flow.waits WHERE run_id = NEW.id;
    IF NOT EXISTS (SELECT 1 FROM flow.functions f
                   WHERE f.trigger = ANY (names)
                     AND (f.failures_of IS NULL OR f.failures_of = NEW.function_id)) THEN
        RETURN NULL;
    END IF;
    SELECT jsonb_build_object(
               'function_id', NEW.function_id,
               'run_id', NEW.id,
               'status', NEW.status,
               'event', jsonb_build_object('id', e.id, 'name', e.name, 'data', e.data, 'ts', e.ts),
               'output', NEW.output,
               'error', CASE WHEN NEW.status = 'failed' THEN jsonb_build_object(
                            'kind', NEW.error_kind, 'message', NEW.error, 'step', NEW.error_step) END,
               'reason', CASE WHEN NEW.status = 'cancelled' THEN NEW.error END)
    INTO payload
    FROM flow.events e
    WHERE e.id = NEW.event_id AND e.name NOT LIKE 'flow/function.%';
    IF payload IS NULL THEN
        RETURN NULL;
    END IF;
    WITH ev AS (
        INSERT INTO flow.events (id, name, data, ts, received_at)
        SELECT flow.uuid_v7(), n.name, payload, ended_at, ended_at
        FROM unnest(names) AS n(name)
        WHERE EXISTS (SELECT 1 FROM flow.functions f
                      WHERE f.trigger = n.name
                        AND (f.failures_of IS NULL OR f.failures_of = NEW.function_id))
        RETURNING id, name
    ), created AS (
        INSERT INTO flow.runs (id, function_id, event_id, status, not_before, created_at)
        SELECT flow.uuid_v7(), f.id, ev.id, 'queued', ended_at, ended_at
        FROM ev JOIN flow.functions f ON f.trigger = ev.name
        WHERE f.failures_of IS NULL OR f.failures_of = NEW.function_id
        RETURNING 1
    )
    SELECT count(*) INTO created_runs FROM created;
    IF created_runs > 0 THEN
        PERFORM pg_notify('flow_wakeup', '');
    END IF;
    RETURN NULL;
END
$$;

DROP TRIGGER runs_end_closes_waits ON flow.runs;
DROP FUNCTION flow.close_waits_of_ended_run();
CREATE TRIGGER runs_ended
    AFTER UPDATE OF status ON flow.runs
    FOR EACH ROW
    WHEN (NEW.status IN ('completed', 'failed', 'cancelled')
          AND OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION flow.run_ended();

-- When each awaited field was first waited on: a park within a second of that
-- looks again a second later (a send that read the fields before the field was
-- added keys no wait on it), also when another park added the field concurrently.
ALTER TABLE flow.awaited_fields ADD COLUMN added_at timestamptz NOT NULL DEFAULT now();
