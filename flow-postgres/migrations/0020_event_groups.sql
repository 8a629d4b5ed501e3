-- Events gathered into one run (`batch_events`, `debounce`; flow_core::grouping).
--
-- A grouped run is stored when the first event of its key opens the group,
-- queued but not due; its `event_id` is that first event and never changes.
-- Every event of the group, the first included, is listed here in the order it
-- joined; the worker reads them after claiming the run.
CREATE TABLE flow.run_events (
    run_id   uuid NOT NULL,
    position integer NOT NULL,
    event_id uuid NOT NULL,
    PRIMARY KEY (run_id, position)
);
-- A send tried again reads back the runs its events joined.
CREATE INDEX run_events_by_event ON flow.run_events (event_id);

-- The latest group of each key, per function. It is open while its run is
-- queued and not yet due: a send joins an event to it only then, holding the
-- key's advisory lock (as singleton keys) and the run's row lock, so a claim
-- either leases the run before the send (which then opens another group) or
-- after it (and reads every event it joined).
CREATE TABLE flow.event_groups (
    function_id text NOT NULL,
    key         text NOT NULL,
    run_id      uuid NOT NULL,
    size        integer NOT NULL,
    opened_at   timestamptz NOT NULL,
    PRIMARY KEY (function_id, key)
);
