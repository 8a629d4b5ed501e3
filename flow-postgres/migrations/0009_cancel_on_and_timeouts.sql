-- cancel_on and timeouts: what ends a run from outside, set up when the run is
-- created by one statement trigger on the runs table (whatever inserted them: a
-- send, an invoke, an end's system event).
--
-- cancel_on: an event whose data carries, in a field named by the function, the
-- value the run's own event has there cancels the run.
--
-- Workers announce each function's cancel triggers (`cancel_triggers`) and mark
-- the field awaited (`awaited_fields`), so that every send of such an event keeps
-- the latest event per value in `wait_keys`, the meeting row of migration 6.
-- Every new run of such a function registers a cancel wait per trigger, and
-- counts itself in the key row's `waits`. So the two
-- sides meet as a park and a send do: a send that locks the key first is seen by
-- the run's registration through the key's latest event (the run is cancelled
-- at once), and a registration that locks it first is seen by the send through
-- the changed count (its second statement cancels the run).
CREATE TABLE flow.cancel_triggers (
    function_id text NOT NULL,
    name        text NOT NULL,
    field       text NOT NULL,
    PRIMARY KEY (function_id, name, field)
);

-- One per open run and cancel trigger; found by (name, field, value) when an
-- event is sent. `since`: events stored after it cancel (the run's creation, less
-- a second, since two sends in flight at once have no order).
CREATE TABLE flow.cancel_waits (
    run_id   uuid NOT NULL,
    event_id uuid NOT NULL,
    name     text NOT NULL,
    field    text NOT NULL,
    value    text NOT NULL,
    since    timestamptz NOT NULL,
    PRIMARY KEY (run_id, name, field)
);
CREATE INDEX cancel_waits_by_match ON flow.cancel_waits (name, field, value);

-- Whether a run registered cancel waits: only such a run's end looks for them.
ALTER TABLE flow.runs ADD COLUMN awaits_cancel boolean NOT NULL DEFAULT false;

-- The reason a run cancelled by an event gives, written by this trigger and by
-- the sends that cancel (flow-postgres's `send.rs` and `waits.rs`).
CREATE FUNCTION flow.cancel_on_reason(name text, event_id uuid, field text) RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT format('cancelled by event `%s` (%s): its `%s` matches this run''s (cancel_on)',
                  name, event_id, field)
$$;

-- timeouts(start, finish): a function's start timeout gives each new run a
-- deadline to start by (`timeout_at`, from its creation), and its finish timeout
-- is kept on the run (`finish_within`) until its first claim replaces the
-- deadline with one to finish by. Claims skip runs past their deadline; workers
-- cancel them (`Store::cancel_timed_out`, on their recovery timer, and at the
-- earliest deadline, which `next_wakeup` reads through the index below).
ALTER TABLE flow.functions ADD COLUMN start_timeout interval;
ALTER TABLE flow.functions ADD COLUMN finish_timeout interval;
ALTER TABLE flow.runs ADD COLUMN timeout_at timestamptz;
ALTER TABLE flow.runs ADD COLUMN finish_within interval;
CREATE INDEX runs_timeouts ON flow.runs (timeout_at)
    WHERE timeout_at IS NOT NULL AND status NOT IN ('completed', 'failed', 'cancelled');

CREATE FUNCTION flow.runs_created() RETURNS trigger
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
        SET timeout_at = n.created_at + f.start_timeout, finish_within = f.finish_timeout
        FROM created n JOIN flow.functions f ON f.id = n.function_id
        WHERE r.id = n.id AND r.status NOT IN ('completed', 'failed', 'cancelled')
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
        WHERE n.status NOT IN ('completed', 'failed', 'cancelled')
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
        WHERE r.id = h.id AND r.status NOT IN ('completed', 'failed', 'cancelled');
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER runs_created
    AFTER INSERT ON flow.runs
    REFERENCING NEW TABLE AS created
    FOR EACH STATEMENT
    EXECUTE FUNCTION flow.runs_created();

-- A run that ends closes its cancel waits (only a run that registered some pays
-- for the trigger).
CREATE FUNCTION flow.close_cancel_waits() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM flow.cancel_waits WHERE run_id = NEW.id;
    RETURN NULL;
END
$$;
CREATE TRIGGER runs_end_closes_cancel_waits
    AFTER UPDATE OF status ON flow.runs
    FOR EACH ROW
    WHEN (NEW.awaits_cancel AND NEW.status IN ('completed', 'failed', 'cancelled')
          AND OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION flow.close_cancel_waits();

