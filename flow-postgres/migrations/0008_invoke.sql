-- Invoke (ctx.invoke): a run started by another run's step, which parks until
-- it ends. The park's commit stores the child (with its event, named
-- `flow/function.invoked`, which no function is triggered by) and the parent's
-- wait for it among the waits for events, under the name `flow/invoke`, field
-- `run_id`, value the child's id: no event has that name, and the wait keeps its
-- deadline across parks and closes when the parent ends, as theirs do.
--
-- The statement that ends the child records how it ended as the parent's invoke
-- step, and wakes the parent. A parent that is executing at that moment cannot be
-- woken: it is marked instead (`woken_under` takes its lease token), and its next
-- park under that lease makes it due at once. Its worker loaded its steps before
-- the record existed; the mark is on its row, which the park's UPDATE reads in its
-- latest version (after waiting for the child's statement to commit), so no end
-- is missed between the two.
ALTER TABLE flow.runs ADD COLUMN parent_id uuid;
ALTER TABLE flow.runs ADD COLUMN woken_under bigint;

-- As migration 7's, with the invoke's part, and the functions that get an end's
-- system events found once. Runs started by a system event send none; invoked
-- runs send them as any run does.
CREATE OR REPLACE FUNCTION flow.run_ended() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    ended_at  timestamptz := COALESCE(NEW.finished_at, now());
    names     text[] := ARRAY['flow/function.finished',
        CASE NEW.status WHEN 'failed' THEN 'flow/function.failed'
                        WHEN 'cancelled' THEN 'flow/function.cancelled' END];
    consumers text[];
    triggers  text[];
    payload   jsonb;
    invoke    record;
    created_runs bigint;
BEGIN
    DELETE FROM flow.waits WHERE run_id = NEW.id;

    IF NEW.parent_id IS NOT NULL THEN
        DELETE FROM flow.waits w
        WHERE w.run_id = NEW.parent_id AND w.name = 'flow/invoke' AND w.field = 'run_id'
          AND w.value = NEW.id::text
        RETURNING w.key, w.position, w.since INTO invoke;
        IF FOUND THEN
            INSERT INTO flow.steps
                (run_id, key, position, kind, output, error, attempts, started_at, finished_at)
            VALUES (NEW.parent_id, invoke.key, invoke.position, 'invoke',
                    CASE WHEN NEW.status = 'completed'
                         THEN jsonb_build_object('run_id', NEW.id, 'output', NEW.output) END,
                    CASE NEW.status
                        WHEN 'failed' THEN jsonb_build_object('kind', 'fatal', 'message',
                            format('invoked function `%s` failed (run %s): %s',
                                   NEW.function_id, NEW.id, NEW.error))
                        WHEN 'cancelled' THEN jsonb_build_object('kind', 'fatal', 'message',
                            format('invoked function `%s` was cancelled (run %s): %s',
                                   NEW.function_id, NEW.id, NEW.error)) END,
                    1, invoke.since, ended_at)
            ON CONFLICT (run_id, key) DO NOTHING;
            IF FOUND THEN
                UPDATE flow.runs p
                SET status = CASE WHEN p.status IN ('waiting', 'sleeping', 'queued')
                                  THEN 'queued' ELSE p.status END,
                    not_before = CASE WHEN p.status IN ('waiting', 'sleeping', 'queued')
                                      THEN LEAST(p.not_before, ended_at) ELSE p.not_before END,
                    wait_since = CASE WHEN p.status IN ('waiting', 'sleeping')
                                      THEN ended_at ELSE p.wait_since END,
                    woken_under = CASE WHEN p.status = 'running'
                                       THEN p.lease_token ELSE p.woken_under END,
                    step_count = p.step_count + 1
                WHERE p.id = NEW.parent_id;
                PERFORM pg_notify('flow_wakeup', '');
            END IF;
        END IF;
    END IF;

    SELECT array_agg(f.id), array_agg(f.trigger) INTO consumers, triggers
    FROM flow.functions f
    WHERE f.trigger = ANY (names)
      AND (f.failures_of IS NULL OR f.failures_of = NEW.function_id);
    IF consumers IS NULL THEN
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
    WHERE e.id = NEW.event_id
      AND e.name NOT IN ('flow/function.finished', 'flow/function.failed',
                         'flow/function.cancelled');
    IF payload IS NULL THEN
        RETURN NULL;
    END IF;
    WITH ev AS (
        INSERT INTO flow.events (id, name, data, ts, received_at)
        SELECT flow.uuid_v7(), n.name, payload, ended_at, ended_at
        FROM unnest(names) AS n(name)
        WHERE n.name = ANY (triggers)
        RETURNING id, name
    ), created AS (
        INSERT INTO flow.runs (id, function_id, event_id, status, not_before, created_at)
        SELECT flow.uuid_v7(), c.id, ev.id, 'queued', ended_at, ended_at
        FROM ev JOIN unnest(consumers, triggers) AS c(id, trigger) ON c.trigger = ev.name
        RETURNING 1
    )
    SELECT count(*) INTO created_runs FROM created;
    IF created_runs > 0 THEN
        PERFORM pg_notify('flow_wakeup', '');
    END IF;
    RETURN NULL;
END
$$;
