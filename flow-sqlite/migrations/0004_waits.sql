-- Waits for events (ctx.wait_for_event), as in flow-postgres's migration 6.
-- SQLite runs one write transaction at a time, so a park and a send never race:
-- whichever commits second sees what the first wrote.
CREATE TABLE flow_awaited_fields (
    name  TEXT NOT NULL,
    field TEXT NOT NULL,
    PRIMARY KEY (name, field)
);

-- The latest event stored with each value of an awaited field.
CREATE TABLE flow_wait_keys (
    name     TEXT NOT NULL,
    field    TEXT NOT NULL,
    value    TEXT NOT NULL,
    event_id TEXT,
    event_at INTEGER,
    PRIMARY KEY (name, field, value)
);

-- Open waits, found by (name, field, value) when an event is sent.
CREATE TABLE flow_waits (
    run_id     TEXT NOT NULL,
    key        TEXT NOT NULL,
    token      INTEGER NOT NULL,
    position   INTEGER NOT NULL,
    name       TEXT NOT NULL,
    field      TEXT NOT NULL,
    value      TEXT NOT NULL,
    since      INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (run_id, key)
);
CREATE INDEX flow_waits_by_match ON flow_waits (name, field, value);

-- When events begin to count for a wait the run reaches next (NULL: its creation).
ALTER TABLE flow_runs ADD COLUMN wait_since INTEGER;

DROP INDEX flow_runs_due;
CREATE INDEX flow_runs_due ON flow_runs (not_before)
    WHERE status IN ('queued', 'sleeping', 'waiting', 'blocked');

-- A wait on a field no send has keyed yet looks for its events by name and time.
CREATE INDEX flow_events_by_name ON flow_events (name, received_at);

-- A run that ends, however it ends (its worker's finish, a cancel, an operator's
-- settlement, too many lost workers), closes its open waits.
CREATE TRIGGER flow_runs_end_closes_waits
    AFTER UPDATE OF status ON flow_runs
    WHEN NEW.status IN ('completed', 'failed', 'cancelled') AND OLD.status <> NEW.status
BEGIN
    DELETE FROM flow_waits WHERE run_id = NEW.id;
END;
