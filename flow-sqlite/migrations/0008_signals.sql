-- Signals, as in flow-postgres's migration 10: the one run waiting on a name
-- keeps its wait among the waits for events (name `flow/signal`, field
-- `signal`, value the name); a file has one writer at a time, so parks and
-- senders need no lock of their own. Signals kept for the next wait on their
-- name (ids are time-ordered):
CREATE TABLE flow_signal_buffer (
    id      TEXT PRIMARY KEY,
    name    TEXT NOT NULL,
    data    TEXT NOT NULL,
    sent_at INTEGER NOT NULL
);
CREATE INDEX flow_signal_buffer_by_name ON flow_signal_buffer (name, id);
