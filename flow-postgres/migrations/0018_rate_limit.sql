-- `rate_limit(limit, period, key)` (flow_core::catalog): an event over a key's
-- limit starts no run; the run it would have started is recorded, ended, with
-- the status `skipped` and the reason as its error. The new status joins the
-- ended ones: nothing claims, cancels or times out a skipped run.
ALTER TABLE flow.runs DROP CONSTRAINT runs_status_check;
-- NOT VALID: every stored row passed the narrower check, so none is read again.
ALTER TABLE flow.runs ADD CONSTRAINT runs_status_check CHECK (status IN
    ('queued', 'running', 'sleeping', 'waiting', 'blocked', 'completed', 'failed', 'cancelled',
     'skipped')) NOT VALID;

-- Each rate-limit key's theoretical arrival time (GCRA), per function. A send
-- whose events name rate-limit keys locks them (advisory, as singleton keys),
-- and its statement, begun after the locks, reads and moves them.
CREATE TABLE flow.rate_limits (
    function_id text NOT NULL,
    key         text NOT NULL,
    tat         timestamptz NOT NULL,
    PRIMARY KEY (function_id, key)
);

-- As migration 9, with `skipped` among the ended statuses (a skipped run gets no
-- timeouts and registers no cancel waits), and a run's start deadline counted
-- from when it is due, for a run an event with a future timestamp delays.
CREATE OR REPLACE FUNCTION flow.runs_created() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    waiting_ids uuid[];
    hit_ids     uuid[];
    hit_reasons text[];
BEGIN
    -- Whole tables of a few rows, read once per inserting statement.
    IF EXISTS (SELECT 1 FROM flow.functions
               WHERE start_timeout IS NOT NULL OR finish_timeout IS NOT NULL) THEN
        UPDATE flow.runs r
        SET timeout_at = GREATEST(n.created_at, n.not_before) + f.start_timeout,
            finish_within = f.finish_timeout
        FROM created n JOIN flow.functions f ON f.id = n.function_id
        WHERE r.id = n.id AND r.status NOT IN ('completed', 'failed', 'cancelled', 'skipped')
          AND (f.start_timeout IS NOT NULL OR f.finish_timeout IS NOT NULL);
    END IF;

    IF NOT EXISTS (SELECT 1 FROM flow.cancel_triggers) THEN
        RETURN NULL;
    END IF;
    WITH keys AS (
        -- A value too long to index (over MATCH_VALUE_BYTES) is never keyed.
        SELECT n.id AS run_id, n.event_id, c.name, c.field,
               (e.data -> c.field)::text AS value,
               n.created_at - interval '1 second' AS since
        FROM created n
        JOIN flow.cancel_triggers c ON c.function_id = n.function_id
        JOIN flow.events e ON e.id = n.event_id
        WHERE n.status NOT IN ('completed', 'failed', 'cancelled', 'skipped')
          AND jsonb_typeof(e.data) = 'object' AND e.data ? c.field
          AND octet_length((e.data -> c.field)::text) <= 1024
    ), registered AS (
        INSERT INTO flow.cancel_waits (run_id, event_id, name, field, value, since)
        SELECT run_id, event_id, name, field, value, since FROM keys
        ON CONFLICT DO NOTHING
        RETURNING run_id
    ), keyed AS (
        -- Locked in key order, as sends and parks lock them.
        INSERT INTO flow.wait_keys AS k (name, field, value, waits)
        SELECT name, field, value, count(*) FROM keys
        GROUP BY name, field, value ORDER BY name, field, value
        ON CONFLICT (name, field, value) DO UPDATE SET waits = k.waits + EXCLUDED.waits
        RETURNING k.name, k.field, k.value, k.event_id, k.event_at
    ), hits AS (
        -- The key's latest event, in the row's latest version: an event stored
        -- since the run began (a send that committed while this one waited for
        -- the key included), never the run's own.
        SELECT DISTINCT ON (keys.run_id) keys.run_id,
               flow.cancel_on_reason(k.name, k.event_id, k.field) AS reason
        FROM keys
        JOIN keyed k ON k.name = keys.name AND k.field = keys.field AND k.value = keys.value
        WHERE k.event_at > keys.since AND k.event_id <> keys.event_id
        ORDER BY keys.run_id
    )
    SELECT (SELECT array_agg(DISTINCT run_id) FROM registered), h.ids, h.reasons
    INTO waiting_ids, hit_ids, hit_reasons
    FROM (SELECT array_agg(run_id) AS ids, array_agg(reason) AS reasons FROM hits) AS h;
    IF waiting_ids IS NOT NULL THEN
        UPDATE flow.runs SET awaits_cancel = true WHERE id = ANY (waiting_ids);
    END IF;
    IF hit_ids IS NOT NULL THEN
        UPDATE flow.runs r
        SET status = 'cancelled', error = h.reason, error_kind = NULL, error_step = NULL,
            finished_at = r.created_at, lease_owner = NULL, lease_expires_at = NULL
        FROM unnest(hit_ids, hit_reasons) AS h(id, reason)
        WHERE r.id = h.id AND r.status NOT IN ('completed', 'failed', 'cancelled', 'skipped');
    END IF;
    RETURN NULL;
END
$$;
