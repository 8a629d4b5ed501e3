-- Signals (ctx.wait_for_signal, Client::signal): a signal goes to the one run
-- waiting on its name. The wait is a row of flow.waits (name `flow/signal`, field
-- `signal`, value the signal's name), so it keeps its deadline across parks and
-- closes when its run ends, as other waits do. Parks and senders meet on an
-- advisory lock of the name (flow-postgres/src/signals.rs), not on a row here.
--
-- Signals sent while no run waited, by senders that asked to keep them: the next
-- wait on the name takes the oldest (ids are time-ordered).
CREATE TABLE flow.signal_buffer (
    id      uuid PRIMARY KEY,
    name    text NOT NULL,
    data    jsonb NOT NULL,
    sent_at timestamptz NOT NULL
);
CREATE INDEX signal_buffer_by_name ON flow.signal_buffer (name, id);
