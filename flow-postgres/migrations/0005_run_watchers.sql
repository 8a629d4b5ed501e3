-- The runs clients wait for: the commit that finishes one deletes its rows and
-- NOTIFYs `flow_finished` with its id, so a waiting client reads it at once. A run
-- nobody waits for costs no NOTIFY. Unlogged: adding a row needs no WAL flush, and
-- after a crash the waits poll, as they do anyway as a backstop.
CREATE UNLOGGED TABLE flow.run_watchers (
    run_id  uuid NOT NULL,
    watcher uuid NOT NULL,
    PRIMARY KEY (run_id, watcher)
);
