-- Waits for events (ctx.wait_for_event).
--
-- `awaited_fields` names each (event name, field) some run has waited on: a send
-- keeps a `wait_keys` row for each such field of the events it stores, holding
-- the latest event with that value. A park that registers a wait and a send
-- that stores a matching event both upsert that row, so whichever comes second
-- waits for the first to commit and then reads what it wrote: the park sees the
-- event, or the send sees that a wait was registered (`waits` counts them) and
-- resolves it. No wake-up is lost between them.
CREATE TABLE flow.awaited_fields (
    name  text NOT NULL,
    field text NOT NULL,
    PRIMARY KEY (name, field)
);

CREATE TABLE flow.wait_keys (
    name     text NOT NULL,
    field    text NOT NULL,
    value    text NOT NULL,
    event_id uuid,
    event_at timestamptz,
    waits    bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (name, field, value)
);

-- Open waits, one per run and wait step; a send finds them by (name, field,
-- value), never by a scan. `since` is when events began to count for it, `token`
-- the lease it was registered under (a run that moved on is not woken by it).
CREATE TABLE flow.waits (
    run_id     uuid NOT NULL,
    key        text NOT NULL,
    token      bigint NOT NULL,
    position   integer NOT NULL,
    name       text NOT NULL,
    field      text NOT NULL,
    value      text NOT NULL,
    since      timestamptz NOT NULL,
    expires_at timestamptz NOT NULL,
    PRIMARY KEY (run_id, key)
);
CREATE INDEX waits_by_match ON flow.waits (name, field, value);

-- When events begin to count for a wait the run reaches next: its last
-- checkpoint, or the time it woke (NULL: its creation).
ALTER TABLE flow.runs ADD COLUMN wait_since timestamptz;

DROP INDEX flow.runs_due;
CREATE INDEX runs_due ON flow.runs (not_before)
    WHERE status IN ('queued', 'sleeping', 'waiting', 'blocked');

-- A wait on a field no send has keyed yet (its events came before anyone waited
-- on it) looks for them by name and time.
CREATE INDEX events_by_name ON flow.events (name, received_at);

-- A run that ends, however it ends (its worker's finish, a cancel, an operator's
-- settlement, too many lost workers), closes its open waits: one rule here
-- instead of one in every statement that can end a run.
CREATE FUNCTION flow.close_waits_of_ended_run() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM flow.waits WHERE run_id = NEW.id;
    RETURN NULL;
END
$$;
CREATE TRIGGER runs_end_closes_waits
    AFTER UPDATE OF status ON flow.runs
    FOR EACH ROW
    WHEN (NEW.status IN ('completed', 'failed', 'cancelled')
          AND OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION flow.close_waits_of_ended_run();
